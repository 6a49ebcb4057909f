"""The longest single insert while the state's largest maps grow with N sessions: a dict
against the SplitMap they are kept in, in one run.

    python benchmarks/growth.py [--sessions 100000 1000000] [--churn 400000]

Two maps: the entities by session id (N keys), and the counter streams (2N keys: the
``lastactive.session.io`` streams of bytes received and sent, keyed as ingest keys them), which
grow back from empty after each rotation of their generations. A dict rehashes every entry when
it outgrows its table (and when deleted entries used up its free slots); SplitMap rehashes a
64th at a time. Each row: the longest insert (ms), and the whole growth's time (s) as the cost
of the split. With ``--churn``, the map then has as many keys replaced (one deleted, one new)
as given. Issue 15's goal: event-loop lag <= 50 ms. Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable, Hashable, MutableMapping

from lastactive.collector._split_map import SplitMap

_REPORTER = ("lastactive", "instance-1", None, None)
_IO = "lastactive.session.io"
_DIRECTIONS = ((("network.io.direction", "receive"),), (("network.io.direction", "transmit"),))


def _session(i: int) -> str:
    return f"session-{i:08d}"


def _stream(i: int) -> tuple[object, ...]:
    """The ``i``-th counter stream: (reporter, scope, name, other attributes, session, agent,
    host), two per session."""
    return (_REPORTER, "lastactive", _IO, _DIRECTIONS[i & 1], _session(i >> 1), None,
            f"host-{(i >> 1) % 1000:04d}")  # fmt: skip


def _grow(
    m: MutableMapping[Hashable, int], key: Callable[[int], Hashable], n: int, churn: int
) -> tuple[float, float, float]:
    """(longest insert while growing to ``n`` keys, whole growth, longest insert while
    churning), seconds."""
    worst = worst_churn = 0.0
    clock = time.perf_counter
    began = clock()
    for i in range(n):
        k = key(i)
        t = clock()
        m[k] = i
        worst = max(worst, clock() - t)
    took = clock() - began
    for i in range(churn):
        del m[key(i)]
        k = key(n + i)
        t = clock()
        m[k] = i
        worst_churn = max(worst_churn, clock() - t)
    return worst, took, worst_churn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--churn", type=int, default=400_000)
    args = ap.parse_args()
    gc.disable()  # the maps' own cost, not the collector's
    print(f"{'sessions':>9} {'map':>8} {'kept in':>9} {'longest insert ms':>18} {'growth s':>9} "
          f"{'longest insert ms, churn':>25}")  # fmt: skip
    for n in args.sessions:
        for what, key, per in (("entities", _session, 1), ("streams", _stream, 2)):
            for name, make in (("dict", dict), ("SplitMap", SplitMap)):
                m: MutableMapping[Hashable, int] = make()
                worst, took, churn = _grow(m, key, n * per, args.churn * per)
                print(f"{n:>9} {what:>8} {name:>9} {worst * 1e3:18.2f} {took:9.2f} "
                      f"{churn * 1e3:25.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
