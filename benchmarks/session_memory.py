"""What a tracked session costs in memory, by how it reports, against one loaded from the store.

    python benchmarks/session_memory.py [--sessions 20000 100000] [--own-reporters]

In-process, on a fake clock; Python's own allocations are traced (``tracemalloc``: the bytes
still allocated per session, exact where RSS keeps what was freed for reuse). The fleet's
sessions report as in ``benchmarks/ingest_scale.py`` (per session three
``lastactive.source.last_time`` gauge points and two cumulative ``lastactive.session.io``
counter points; ``--own-reporters``: a resource per session with its own
``service.instance.id``, a reporter clock each). Rows, bytes per session:

* **loaded from the store** (the baseline, same run): the sessions' records loaded into a
  fresh state, as ``serve`` starts (no counter streams, no rate windows, no reporter clocks);
* **reporting**: two exports per session 1 s apart (what it costs while it reports);
* **busy**: 1000 of them report every second for 30 s (a rate window with a bucket each
  second), per busy session;
* **quiet**: ``RECENT_S`` later with nothing new, once the transition engine's tick has run
  the recent-activity checks (what a session that stopped costs: a fleet's sessions are
  mostly quiet).

Issue 15's goal: <= 1 KB per tracked session. Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from collections.abc import Callable

from ingest_scale import MS, PER_BATCH, Fleet, S, request

from lastactive.collector._ages import RECENT_S
from lastactive.collector._state import ActivityState

BUSY = 1000
"""Sessions that report every second for 30 s."""


def _traced(do: Callable[[], object]) -> int:
    """Bytes still allocated after ``do()`` (a full collection before each count)."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    kept = do()
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    del kept
    return grown


def figures_at(n: int, own_reporters: bool) -> dict[str, float]:
    """Bytes per session at ``n`` sessions, each row of the module docstring."""
    t0 = time.time_ns() - 86400 * S
    fleet = Fleet(t0)

    def export(sessions: range) -> None:
        for i in range(sessions.start, sessions.stop, PER_BATCH):
            fleet.now += MS
            batch = list(range(i, min(i + PER_BATCH, sessions.stop)))
            fleet.serve_path(request(batch, fleet.now, t0, own_reporters))

    def reporting() -> None:
        export(range(n))
        fleet.now += S
        export(range(n))

    def busy() -> None:
        for _ in range(30):
            fleet.now += S
            export(range(BUSY))

    def quiet() -> None:
        fleet.now += (RECENT_S + 2) * S
        fleet.engine.tick()

    out = {"reporting": _traced(reporting) / n}
    out["busy"] = out["reporting"] + _traced(busy) / BUSY
    out["quiet"] = out["reporting"] + _traced(quiet) / n
    records = [e.record() for e in fleet.state.all_entities()]
    loaded = ActivityState(started_at=t0)
    out["loaded from the store (baseline)"] = _traced(lambda: loaded.load(records, t0)) / n
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[20_000, 100_000])
    ap.add_argument(
        "--own-reporters",
        action="store_true",
        help="a resource per session with its own service.instance.id",
    )
    args = ap.parse_args()
    tracemalloc.start()
    columns = [figures_at(n, args.own_reporters) for n in args.sessions]
    print("\nbytes per session (traced allocations) at N sessions")
    print(f"{'':36}" + "".join(f"{n:>12}" for n in args.sessions))
    for name in ("loaded from the store (baseline)", "reporting", "busy", "quiet"):
        print(f"{name:36}" + "".join(f"{c[name]:12.0f}" for c in columns))


if __name__ == "__main__":
    main()
