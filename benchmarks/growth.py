"""The longest single insert while a map of session ids grows to N: a dict against the state's
SplitMap, in one run.

    python benchmarks/growth.py [--sessions 100000 1000000] [--churn 400000]

A dict rehashes every entry when it outgrows its table (and when deleted entries used up its
free slots); SplitMap rehashes a 64th at a time. Each row: the longest insert (ms), and the
whole growth's time (s) as the cost of the split. With ``--churn``, the map then has as many
ids replaced (one deleted, one new) as given, at N. Issue 15's goal: event-loop lag <= 50 ms.
Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import MutableMapping

from lastactive.collector._split_map import SplitMap


def _grow(m: MutableMapping[str, int], n: int, churn: int) -> tuple[float, float, float]:
    """(longest insert while growing, whole growth, longest insert while churning), seconds."""
    worst = worst_churn = 0.0
    clock = time.perf_counter
    began = clock()
    for i in range(n):
        key = f"session-{i:08d}"
        t = clock()
        m[key] = i
        worst = max(worst, clock() - t)
    took = clock() - began
    for i in range(churn):
        del m[f"session-{i:08d}"]
        key = f"session-{n + i:08d}"
        t = clock()
        m[key] = i
        worst_churn = max(worst_churn, clock() - t)
    return worst, took, worst_churn


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--churn", type=int, default=400_000)
    args = ap.parse_args()
    gc.disable()  # the maps' own cost, not the collector's
    print(f"{'N':>9} {'map':>9} {'longest insert ms':>18} {'growth s':>9} "
          f"{'longest insert ms, churn':>25}")  # fmt: skip
    for n in args.sessions:
        for name, make in (("dict", dict), ("SplitMap", SplitMap)):
            worst, took, churn = _grow(make(), n, args.churn)
            print(f"{n:>9} {name:>9} {worst * 1e3:18.2f} {took:9.2f} {churn * 1e3:25.2f}")


if __name__ == "__main__":
    main()
