"""Cost of one ``GET /metrics`` scrape as the fleet grows, next to exposing every session.

    python benchmarks/metrics_scrape.py [--sessions 1000 10000 100000] [--top 20]

Builds state in-process (sessions spread over 100 hosts, a tenth of them producing output, a
clock standing still so their rate windows stay full), then times ``generate_latest`` of the
collector's registry, and the same scrape as ``GET /metrics`` runs it on the event loop: the
busiest sessions ranked a slice at a time first (``FleetRegistry.prepare``), with the longest
the loop was held meanwhile. The baseline, in the same run, is the same registry with
per-session series for every session (``--metrics-top-sessions`` as large as the fleet): what
the cardinality bound saves in scrape time and bytes.

Then the recent-activity counts (``lastactive_sessions_recent``) after every session's
check came due (:data:`~lastactive.collector._ages.RECENT_S` seconds without new activity): the
first scrape when the checks are left to it (the baseline) next to the transition engine's
tick running them a slice at a time before the scrape (what ``serve`` does).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from prometheus_client import generate_latest

from lastactive.collector._ages import RECENT_S
from lastactive.collector._core import Core
from lastactive.collector._flusher import Flusher
from lastactive.collector._ingest import Ingest
from lastactive.collector._metrics import registry_for
from lastactive.collector._state import NANOS, ActivityState, Identity
from lastactive.collector._transitions import TICK_BUDGET, TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy, Rules
from lastactive.collector.store import SqliteStore


def build(n: int) -> tuple[Core, Flusher]:
    now = time.time_ns()
    state = ActivityState(started_at=now)
    for i in range(n):
        ents = state.resolve(Identity(session_id=f"s{i}", host_id=f"h{i % 100}"), now)
        t = now - (i % 7200) * NANOS
        state.activity(ents, "input", t)
        if i % 10 == 0:
            state.io(ents, False, 1000 + i, now)
    engine = TransitionEngine(state, Policy(), lambda: now)
    engine.prime()
    core = Core(Ingest(state), Policy(), engine, WatchHub(), lambda: now)
    return core, Flusher(state, SqliteStore(":memory:"), 1.0, retention_ns=NANOS)


def scrape(core: Core, flusher: Flusher, top: int, repeat: int) -> tuple[float, int]:
    registry = registry_for(core, flusher, top)
    times, size = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        size = len(generate_latest(registry))
        times.append(time.perf_counter() - began)
    return statistics.median(times), size


def served(core: Core, flusher: Flusher, top: int, repeat: int) -> tuple[float, float]:
    """A scrape as ``GET /metrics`` runs it on the event loop (``prepare``, then collect and
    format): its median seconds and the longest the loop was held meanwhile (the largest gap
    between the turns of another task), median over ``repeat``."""
    registry = registry_for(core, flusher, top)

    async def once() -> tuple[float, float]:
        longest, last, done = 0.0, time.perf_counter(), False

        async def probe() -> None:
            nonlocal longest, last
            while not done:
                await asyncio.sleep(0)
                at = time.perf_counter()
                longest, last = max(longest, at - last), at

        task = asyncio.create_task(probe())
        await asyncio.sleep(0)
        began = last = time.perf_counter()
        await registry.prepare()
        generate_latest(registry)
        took = time.perf_counter() - began
        done = True
        await task
        return took, max(longest, time.perf_counter() - last)

    runs = [asyncio.run(once()) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), statistics.median(h for _, h in runs)


def recent_checks(n: int, tick_first: bool) -> tuple[float, int, float]:
    """``n`` sessions whose recent-activity checks all came due: the first scrape's seconds,
    and (``tick_first``) how many tick slices ran before it and the slowest (seconds)."""
    now = [time.time_ns()]
    state = ActivityState(started_at=now[0])
    for i in range(n):
        ents = state.resolve(Identity(session_id=f"s{i}", host_id=f"h{i % 100}"), now[0])
        state.activity(ents, "input", now[0] - (i % 60) * NANOS)
    policy = Policy(Rules(idle_after=3600, hibernate_after=7200))  # no transition meanwhile
    engine = TransitionEngine(state, policy, lambda: now[0])
    engine.prime()
    core = Core(Ingest(state), policy, engine, WatchHub(), lambda: now[0])
    flusher = Flusher(state, SqliteStore(":memory:"), 1.0, retention_ns=NANOS)
    registry = registry_for(core, flusher, 20)
    now[0] += (RECENT_S + 61) * NANOS
    slices, slowest = 0, 0.0
    while tick_first:
        began = time.perf_counter()
        engine.tick(TICK_BUDGET)
        slowest = max(slowest, time.perf_counter() - began)
        slices += 1
        tick_first = engine.behind
    began = time.perf_counter()
    generate_latest(registry)
    return time.perf_counter() - began, slices, slowest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[1000, 10_000, 100_000])
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print(f"one /metrics scrape, median of {args.repeat}; top {args.top} per-session series")
    print("(served: ranked a slice at a time first, as GET /metrics does; held: the longest")
    print(" the event loop was held during it)")
    print(
        f"{'sessions':>9} {'ms':>8} {'KiB':>7}   {'served ms':>9} {'held ms':>8}   "
        f"{'all sessions: ms':>17} {'KiB':>8} {'x':>6}"
    )
    for n in args.sessions:
        core, flusher = build(n)
        ms, size = scrape(core, flusher, args.top, args.repeat)
        served_s, held = served(core, flusher, args.top, args.repeat)
        all_ms, all_size = scrape(core, flusher, n, max(1, args.repeat // 2))
        print(
            f"{n:>9} {ms * 1000:>8.1f} {size / 1024:>7.1f}   {served_s * 1000:>9.1f} "
            f"{held * 1000:>8.1f}   {all_ms * 1000:>17.1f} {all_size / 1024:>8.0f} "
            f"{all_ms / ms:>6.1f}"
        )
    print("\nevery session's recent-activity check due: the first scrape (ms)")
    print(f"{'sessions':>9} {'left to it':>11}   {'tick first':>10} {'slices':>7} {'slowest':>8}")
    for n in args.sessions:
        left, _, _ = recent_checks(n, tick_first=False)
        after, slices, slowest = recent_checks(n, tick_first=True)
        print(
            f"{n:>9} {left * 1000:>11.1f}   {after * 1000:>10.1f} {slices:>7} "
            f"{slowest * 1000:>8.2f}"
        )


if __name__ == "__main__":
    main()
