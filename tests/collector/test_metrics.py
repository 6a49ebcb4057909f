"""``/metrics`` read from the core at scrape (fake clock): fleet states, per-session series only
for what is worth watching, and the ingest health counters of ``collector._stats``."""

from __future__ import annotations

import asyncio

from prometheus_client import generate_latest

from lastactive.collector._core import Core
from lastactive.collector._flusher import Flusher
from lastactive.collector._ingest import Ingest, Outcome
from lastactive.collector._metrics import RANK_SLICE, registry_for
from lastactive.collector._state import ActivityState, Identity
from lastactive.collector._stats import LATENCY_BUCKETS, IngestStats
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy, Rules
from lastactive.collector.store import SqliteStore
from lastactive.conventions import Source
from tests.helpers import turns_while

S = 1_000_000_000
T0 = 1_800_000_000 * S


def scrape(core: Core, top: int) -> list[str]:
    flusher = Flusher(core.state, SqliteStore(":memory:"), 1.0, retention_ns=S, clock=core.clock)
    return generate_latest(registry_for(core, flusher, top)).decode().splitlines()


def make(now: list[int]) -> Core:
    state = ActivityState()
    policy = Policy(Rules(idle_after=60, runaway_bytes_per_second=1000))
    engine = TransitionEngine(state, policy, lambda: now[0])
    return Core(Ingest(state, lambda: now[0]), policy, engine, WatchHub(), lambda: now[0])


def test_fleet_states_and_per_session_series_for_runaway_and_the_busiest_only() -> None:
    now = [T0]
    core = make(now)
    state = core.state
    for i in range(5):
        ents = state.resolve(Identity(session_id=f"s{i}", host_id="h"), T0)
        state.activity(ents, Source.INPUT, T0 - 120 * S if i < 3 else T0)
    spinning = state.resolve(Identity(session_id="spin", host_id="h"), T0)
    state.io(spinning, False, 60_000, T0)  # 2000 B/s over the 30 s window: runaway
    state.activity(spinning, Source.OUTPUT, T0)
    core.engine.tick()
    lines = scrape(core, top=0)
    assert 'lastactive_sessions{state="idle"} 3.0' in lines
    assert 'lastactive_sessions{state="active"} 3.0' in lines
    assert 'lastactive_sessions{state="runaway"} 1.0' in lines
    assert 'lastactive_host_sessions{host_id="h",state="idle"} 3.0' in lines
    assert "lastactive_sessions_idle_seconds_count 6.0" in lines
    per_session = [ln for ln in lines if ln.startswith("lastactive_session_runaway{")]
    assert per_session == ['lastactive_session_runaway{agent="",host_id="h",session_id="spin"} 1.0']


def test_ingest_health_counters_and_latency_histogram() -> None:
    stats = IngestStats()
    stats.ok("metrics", "grpc", Outcome(accepted=5, rejected=1), 0.0007)
    stats.ok("metrics", "grpc", Outcome(accepted=2), 0.3)
    stats.error("logs", "http", "415")
    assert stats.requests == {("metrics", "grpc"): 2, ("logs", "http"): 1}
    assert stats.accepted[("metrics", "grpc")] == 7 and stats.rejected[("metrics", "grpc")] == 1
    assert stats.failed == {("logs", "http", "415"): 1}
    buckets = stats.latency[("metrics", "grpc")]
    assert buckets[LATENCY_BUCKETS.index(0.001)] == 1  # 0.7 ms: the 1 ms bucket
    assert buckets[LATENCY_BUCKETS.index(0.5)] == 1 and abs(buckets[-1] - 0.3007) < 1e-9

    now = [T0]
    core = make(now)
    core.stats.ok("metrics", "grpc", Outcome(accepted=5), 0.0007)
    lines = scrape(core, top=0)
    assert 'lastactive_otlp_requests_total{signal="metrics",transport="grpc"} 1.0' in lines
    assert (
        'lastactive_otlp_ingest_duration_seconds_bucket{le="0.001",signal="metrics",'
        'transport="grpc"} 1.0' in lines
    )


def test_an_insecure_bind_shows_on_metrics() -> None:
    core = make([T0])
    flusher = Flusher(core.state, SqliteStore(":memory:"), 1.0, retention_ns=S, clock=core.clock)
    for insecure, value in ((False, "0.0"), (True, "1.0")):
        lines = generate_latest(registry_for(core, flusher, 0, insecure=insecure)).decode()
        assert f"lastactive_insecure {value}" in lines.splitlines()


def test_the_busiest_sessions_are_ranked_a_slice_at_a_time_with_the_loop_free_between() -> None:
    now = [T0]
    core = make(now)
    state = core.state
    n = 2 * RANK_SLICE + 100
    for i in range(n):
        ents = state.resolve(Identity(session_id=f"s{i}", host_id="h"), T0)
        state.io(ents, False, 30 * ((i * 7919) % n), T0)  # distinct rates, in no order
    flusher = Flusher(state, SqliteStore(":memory:"), 1.0, retention_ns=S, clock=core.clock)
    registry = registry_for(core, flusher, 5)

    def busiest(text: str) -> list[str]:
        rate = "lastactive_session_output_bytes_per_second{"
        return [ln for ln in text.splitlines() if ln.startswith(rate)]

    whole = busiest(generate_latest(registry).decode())  # ranked at collect, in one go
    assert len(whole) == 5 and all(f" {float(n - k)}" in " ".join(whole) for k in range(1, 6))

    async def scrape() -> str:
        await registry.prepare()
        return generate_latest(registry).decode()

    turns, text = asyncio.run(turns_while(scrape()))
    assert busiest(text) == whole
    assert turns == 2  # the other task ran between the three slices
