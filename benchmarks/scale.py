"""What each fleet-wide path costs on the event loop as the fleet grows (issue 15).

    python benchmarks/scale.py [--sessions 10000 100000 1000000] [--repeat 3]

Builds a fleet in-process (:func:`build`: sessions over up to 1000 hosts, most in use or
hibernated, some coming due, some ended), primes the transition engine, then times, median
of ``--repeat``, with the survivors frozen as ``serve`` runs, each path a request or a periodic
task runs on the loop: the retention purge, ``/v1/decisions``, a "most recent first" page of 10
(all hosts, one host), a watch snapshot's first page and one host's snapshot, a tick after a
fifth of the sessions were touched (all of it, and its longest slice), the flush snapshot with
every session changed (all, and one slice), a ``/metrics`` scrape, a full GC pause (survivors
frozen, and nothing frozen); the RSS per session; start-up from a SQLite file of the fleet.
The baselines, measured in the same run: a bare pass over the entity dict (the floor of
anything that looks at the whole fleet) and ``GET`` of one session (view and evaluation).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil
from prometheus_client import generate_latest

from lastactive.collector._core import Core
from lastactive.collector._flusher import RECORD_SLICE, Flusher
from lastactive.collector._freeze import freeze_survivors
from lastactive.collector._ingest import Ingest
from lastactive.collector._metrics import registry_for
from lastactive.collector._paging import DEFAULT_PAGE, sessions_page
from lastactive.collector._sliced import whole
from lastactive.collector._state import NANOS, ActivityState, Identity, Kind
from lastactive.collector._transitions import TICK_BUDGET, TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy
from lastactive.collector.store import SqliteStore

HOSTS = 1000
RETENTION_NS = 86400 * NANOS


def build(n: int, now: int) -> Core:
    """A fleet as an operator runs it: most sessions in use (activity in the last minute) or
    hibernated, 1 % coming due (activity 25-35 min ago against hibernate_after 30 min), 5 %
    ended within two hours, a tenth producing output."""
    state = ActivityState(started_at=now)
    for i in range(n):
        ents = state.resolve(
            Identity(session_id=f"session-{i:08d}", host_id=f"host-{i % HOSTS:04d}"), now
        )
        if i % 100 == 0:
            t = now - (1500 + i * 7 % 600) * NANOS
        elif i % 3 == 0:
            t = now - (7200 + i * 7 % 7200) * NANOS
            state.activity(ents, "hibernate", t + 1800 * NANOS)
        else:
            t = now - (i * 7 % 60) * NANOS
        state.activity(ents, "input", t)
        state.activity(ents, "process", now - (i * 7 % 10) * NANOS)
        if i % 10 == 0:
            state.io(ents, False, 1000 + i, now - NANOS)
        if i % 20 == 1:
            state.activity(ents, "exit", now - (i * 7 % 7200) * NANOS)
    engine = TransitionEngine(state, Policy(), lambda: now)
    engine.prime()
    return Core(Ingest(state, lambda: now), Policy(), engine, WatchHub(), lambda: now)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times)


def touch_fifth(core: Core, now: int) -> Callable[[], tuple[float, float]]:
    """A tick after a fifth of the sessions got new input (each run a little later): its
    whole work and its longest slice (the loop runs between slices of TICK_BUDGET)."""
    state, engine = core.state, core.engine
    sessions = list(state.entities[Kind.SESSION].values())
    runs = iter(range(1, 1 << 30))

    def run() -> tuple[float, float]:
        t = now - NANOS + next(runs)
        for e in sessions[::5]:
            state.activity([e], "input", t)
        total = longest = 0.0
        while True:
            began = time.perf_counter()
            engine.tick(TICK_BUDGET)
            took = time.perf_counter() - began
            total, longest = total + took, max(longest, took)
            if not engine.behind:
                return total, longest

    return run


def startup(core: Core, now: int) -> tuple[float, float]:
    """Seconds to save the fleet to a SQLite file, and to load it and prime the engine."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "fleet.db"
        store = SqliteStore(db)
        records = [e.record() for e in core.state.all_entities()]
        began = time.perf_counter()
        store.save(records, [])
        saved = time.perf_counter() - began
        store.close()
        del records
        began = time.perf_counter()
        store = SqliteStore(db)
        state = ActivityState(started_at=now)
        state.load(store.load())
        state.load_streams(store.load_streams())
        TransitionEngine(state, Policy(), lambda: now).prime()
        loaded = time.perf_counter() - began
        store.close()
        del state
        gc.collect()
    return saved, loaded


def figures_at(n: int, repeat: int) -> dict[str, float]:
    """Seconds per path at ``n`` sessions (and the RSS per session, bytes)."""
    proc = psutil.Process(os.getpid())
    gc.collect()
    rss0 = proc.memory_info().rss
    now = time.time_ns()
    core = build(n, now)
    gc.collect()
    rss = (proc.memory_info().rss - rss0) / n
    freeze_survivors()  # as serve does once the state is loaded (and after each full GC)
    state, engine, r = core.state, core.engine, repeat
    flusher = Flusher(state, SqliteStore(":memory:"), 1.0, retention_ns=RETENTION_NS)
    registry = registry_for(core, flusher)
    figures = {
        "floor: bare pass over entities": timed(lambda: [None for _ in state.all_entities()], r),
        "baseline: GET one session": timed(
            lambda: core.policy.evaluate(
                state.get(Kind.SESSION, "session-00000007", now) or _missing(), now
            ),
            r,
        ),
        "retention purge": timed(lambda: state.purge(now, RETENTION_NS), r),
        "/v1/decisions (whole lists)": timed(lambda: engine.decisions(now, 600 * NANOS), r),
        "/v1/decisions (limit 1000)": timed(
            lambda: engine.decisions(now, 600 * NANOS, DEFAULT_PAGE), r
        ),
        "sessions?limit=10": timed(
            lambda: whole(sessions_page(state, now, None, 10, False, "")), r
        ),
        "sessions?limit=10&trusted_only": timed(
            lambda: whole(sessions_page(state, now, None, 10, True, "")), r
        ),
        "sessions?host=h&limit=10": timed(
            lambda: whole(sessions_page(state, now, "host-0007", 10, False, "")), r
        ),
        "watch snapshot, one page": timed(lambda: next(engine.snapshot_pages()), r),
        "watch snapshot, one host": timed(lambda: engine.snapshot("host-0007"), r),
    }
    touch = touch_fifth(core, now)
    ticks = [touch() for _ in range(r)]
    figures["tick, a fifth touched: all"] = statistics.median(t for t, _ in ticks)
    figures["tick, a fifth touched: slice"] = statistics.median(s for _, s in ticks)

    def flush_all() -> object:
        for e in state.all_entities():
            state._dirty.add(e)
        return state.take_dirty()

    figures["flush snapshot, all changed"] = timed(flush_all, r)
    slices = -(-state.count() // RECORD_SLICE)
    figures["flush snapshot: one slice"] = figures["flush snapshot, all changed"] / slices
    figures["/metrics scrape"] = timed(lambda: generate_latest(registry), r)
    figures["full GC pause, survivors frozen"] = timed(gc.collect, r)
    gc.unfreeze()
    figures["full GC pause, nothing frozen"] = timed(gc.collect, r)
    saved, figures["start-up: load + prime"] = startup(core, now)
    figures["RSS per session (bytes)"] = rss / 1000  # printed x1000 below
    print(f"... {n} sessions done (save to SQLite {saved:.1f} s)", flush=True)
    return figures


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows: dict[str, list[str]] = {}
    for n in args.sessions:
        for name, seconds in figures_at(n, args.repeat).items():
            rows.setdefault(name, []).append(f"{seconds * 1000:10.3f}")
    print(f"\nms per call (median of {args.repeat}) at N sessions")
    print(f"{'':34}" + "".join(f"{n:>10}" for n in args.sessions))
    for name, cells in rows.items():
        print(f"{name:34}" + "".join(cells))


def _missing() -> object:
    raise SystemExit("the sample session is missing")


if __name__ == "__main__":
    main()
