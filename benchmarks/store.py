"""Commit cost of the two stores, in the same run: SQLite (the default, WAL, synchronous=NORMAL)
and PostgreSQL (a real server this script starts in a temp dir, fsync on).

    python benchmarks/store.py [--sizes 10 100 1000 10000 100000] [--small 200]

For each size, one commit of N changed entities that already exist (the steady case: every
flush after the first updates rows), merged by the max-register rules; and the latency of many
small commits (10 entities each: a group commit that an export waits for). SCALEOUT: COPY + one
upsert measured 0.83-1.1x SQLite's time with per-source columns, 1.2-1.6x with a jsonb map (our
layout); a commit with fsync 6-11 ms median.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers

from lastactive.collector._record import EntityRecord
from lastactive.collector.store import PostgresStore, SqliteStore, Store
from tests.helpers import PostgresServer

T0 = 1_800_000_000 * 1_000_000_000


def records(n: int, step: int, offset: int = 0) -> list[EntityRecord]:
    t = T0 + step * 5_000_000_000
    return [
        EntityRecord(
            kind="session",
            id=f"s{offset + i}",
            host_id=f"h{(offset + i) % 1000}",
            service_name="bench",
            first_seen=T0,
            last_seen=t,
            sources=(("input", t - 7), ("output", t - 3), ("process", t)),
            input_bytes=step * 10,
            output_bytes=step * 1000,
            pid=1000 + i,
            holds=(("lease:L", t, 0),) if i % 10 == 0 else (),
        )
        for i in range(n)
    ]


def commit_seconds(store: Store, n: int) -> float:
    store.save(records(n, 0))  # the rows exist: this commit updates them
    batch = records(n, 1)
    began = time.perf_counter()
    store.save(batch)
    return time.perf_counter() - began


def small_commits_ms(store: Store, count: int) -> list[float]:
    out = []
    for k in range(count):
        batch = records(10, k + 2, offset=(k % 50) * 10)
        began = time.perf_counter()
        store.save(batch)
        out.append((time.perf_counter() - began) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10_000, 100_000])
    parser.add_argument("--small", type=int, default=200, help="small commits to time")
    args = parser.parse_args()
    server = PostgresServer(fsync=True).start()
    databases = iter(range(1000))
    try:

        def postgres() -> Store:
            return PostgresStore(server.create_database(f"bench{next(databases)}"))

        with tempfile.TemporaryDirectory() as tmp:

            def sqlite() -> Store:
                return SqliteStore(Path(tmp) / f"bench{next(databases)}.db")

            makers: dict[str, Callable[[], Store]] = {"sqlite": sqlite, "postgresql": postgres}
            print(f"{'changed':>8} {'sqlite ms':>10} {'postgresql ms':>14} {'x sqlite':>9} "
                  f"{'pg rows/s':>10}")  # fmt: skip
            for n in args.sizes:
                took = {}
                for name, make in makers.items():
                    store = make()
                    took[name] = commit_seconds(store, n)
                    store.close()
                pg, lite = took["postgresql"], took["sqlite"]
                print(f"{n:>8} {lite * 1000:>10.1f} {pg * 1000:>14.1f} {pg / lite:>9.2f} "
                      f"{n / pg:>10.0f}")  # fmt: skip
            print(f"\n{args.small} commits of 10 entities (ms):")
            print(f"{'store':>12} {'p50':>7} {'p90':>7} {'p99':>7}")
            for name, make in makers.items():
                store = make()
                store.save(records(500, 1))
                ms = sorted(small_commits_ms(store, args.small))
                store.close()
                q = statistics.quantiles(ms, n=100)
                print(f"{name:>12} {q[49]:>7.2f} {q[89]:>7.2f} {q[98]:>7.2f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
