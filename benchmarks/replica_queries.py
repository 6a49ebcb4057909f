"""Decisions and session lists on a replica, answered from PostgreSQL, at 100k and 1M sessions
(issue 13: "list queries and decisions are indexed queries, not scans of every row"), next to
the same questions answered from one process's memory (the baseline, in the same run).

    python benchmarks/replica_queries.py [--sessions 100000 1000000] [--calls 30]

Per fleet size: the sessions are saved to a fresh PostgreSQL database (fsync on) with their
owner's index entries (``emitted``: the deadline of each, 1 % of them held up), and loaded
into an in-process state and engine. Then ``Replica.decisions`` / ``Replica.sessions`` (real
``PostgresCluster`` queries in worker threads) and ``TransitionEngine.decisions`` /
``ActivityState.sessions`` are timed, p50 and p99 in ms over ``--calls`` calls each, at limit
100 and 1000. 1 % of the sessions are due now, 1 % more within the window (600 s). Nothing
here asserts; it prints.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.helpers

import psycopg

from lastactive.collector._pg_cluster import PostgresCluster
from lastactive.collector._record import EntityRecord
from lastactive.collector._replica import Replica
from lastactive.collector._state import ActivityState
from lastactive.collector._transitions import TransitionEngine, condition_text
from lastactive.collector.policy import Policy, Rules
from lastactive.collector.store import PostgresStore
from tests.helpers import PostgresServer

S = 1_000_000_000
NOW = 1_800_000_000 * S
HIBERNATE_S = 3600


def _records(n: int, rng: random.Random) -> list[EntityRecord]:
    out = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.01:  # due now
            ago = HIBERNATE_S + rng.randint(1, 3000)
        elif roll < 0.02:  # due within 600 s
            ago = HIBERNATE_S - rng.randint(1, 599)
        else:
            ago = rng.randint(0, HIBERNATE_S - 700)
        t = NOW - ago * S
        holds = (("lease:l", t, NOW + 3600 * S),) if rng.random() < 0.01 else ()
        out.append(EntityRecord(kind="session", id=f"s{i}", host_id=f"h{i % 1000}",
                                first_seen=t - S, last_seen=t, sources=(("input", t),),
                                holds=holds, status="active", status_time=t))  # fmt: skip
    return out


def _timed(calls: int, call: Callable[[], Awaitable[object] | object]) -> tuple[float, float]:
    async def main() -> list[float]:
        times = []
        for _ in range(calls):
            began = time.perf_counter()
            result = call()
            if asyncio.iscoroutine(result):
                await result
            times.append(time.perf_counter() - began)
        return sorted(times)

    times = asyncio.run(main())
    return statistics.median(times) * 1000, times[max(0, int(len(times) * 0.99) - 1)] * 1000


def _figures(
    engine: TransitionEngine,
    state: ActivityState,
    replica: Replica,
    policy: Policy,
    limit: int,
    calls: int,
) -> dict[str, tuple[float, float]]:
    """The same questions from memory and from the store, (p50, p99) ms each."""
    return {
        "decisions, memory": _timed(calls, lambda: engine.decisions(NOW, 600 * S, limit)),
        "decisions, replica": _timed(calls, lambda: replica.decisions(
            policy, NOW, 600 * S, limit)),
        "sessions, memory": _timed(calls, lambda: state.sessions(NOW, None, limit + 1)),
        "sessions, replica": _timed(calls, lambda: replica.sessions(
            NOW, None, limit + 1, False, None)),
        "sessions on a host, replica": _timed(calls, lambda: replica.sessions(
            NOW, "h7", limit + 1, False, None)),
    }  # fmt: skip


def run(n: int, pg: PostgresServer, calls: int) -> None:
    rng = random.Random(n)
    records = _records(n, rng)
    policy = Policy(defaults=Rules(idle_after=60, hibernate_after=HIBERNATE_S))
    state = ActivityState()
    state.load(records)
    engine = TransitionEngine(state, policy, lambda: NOW)
    engine.prime()
    url = pg.create_database(f"q{n}")
    store = PostgresStore(url)
    began = time.perf_counter()
    for i in range(0, n, 50_000):
        store.save(records[i : i + 50_000], [])
    rows = [(str(e.kind), e.id, condition_text(e.condition), e.deadline, engine.is_held(e))
            for e in state.all_entities() if e.condition is not None]  # fmt: skip
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy("COPY emitted (kind, id, condition, deadline, held) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        conn.execute("ANALYZE")
    print(f"{n:>9,} sessions: saved and indexed in {time.perf_counter() - began:.0f} s",
          flush=True)  # fmt: skip
    replica = Replica(PostgresCluster(store, "bench", 10.0), ActivityState(), lambda: NOW)
    for limit in (100, 1000):
        for name, (p50, p99) in _figures(engine, state, replica, policy, limit, calls).items():
            print(f"    limit {limit:>5}  {name:<28} p50 {p50:8.2f} ms  p99 {p99:8.2f} ms",
                  flush=True)  # fmt: skip
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--calls", type=int, default=30)
    args = parser.parse_args()
    pg = PostgresServer(fsync=True).start()
    try:
        for n in args.sessions:
            run(n, pg, args.calls)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
