"""Serving while the stored state loads: exports are acknowledged, reads wait (503 /
UNAVAILABLE with a retry delay), and what arrived meanwhile merges with what was stored."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from datetime import datetime
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lastactive.collector._record import EntityRecord
from lastactive.collector._startup import LOAD_CHUNK, LOAD_PAGE, TURN_S, StateLoader
from lastactive.collector._state import ActivityState, Kind
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector.policy import Policy
from lastactive.collector.store import SqliteStore
from tests.helpers import GatedStore, InProcessCollector, last_input, wait_for

S = 1_000_000_000


def _stored(path: Path, n: int) -> int:
    """A database with sessions s0..s{n-1} last used an hour ago; returns that time (ns)."""
    hour_ago = time.time_ns() - 3600 * S
    store = GatedStore(path)
    store.save(
        [
            EntityRecord(
                kind="session",
                id=f"s{i}",
                first_seen=hour_ago - S,
                last_seen=hour_ago,
                sources=(("input", hour_ago),),
                host_id="h",
            )
            for i in range(n)
        ]
    )
    store.close()
    return hour_ago


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _health(c: InProcessCollector, service: str) -> int:
    with grpc.insecure_channel(c.grpc_target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10).status)


def _ns(rfc3339: str) -> int:
    t = datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    return int(t.timestamp() * S)


def test_exports_are_acknowledged_and_reads_wait_while_the_state_loads(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    hour_ago = _stored(db, LOAD_PAGE + 10)  # more than one page
    store = GatedStore(db)
    c = InProcessCollector(store, wait_loaded=False).start()
    try:
        status, body = c.get("/readyz")
        assert status == 503 and "loading its stored state" in body["reason"]
        status, body = c.get("/v1/sessions/s1")
        assert status == 503 and "loading its stored state" in body["detail"]
        assert c.get("/v1/decisions")[0] == 503
        with pytest.raises(grpc.RpcError) as refused:
            c.grpc_session("s1")
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(refused.value.trailing_metadata() or ())
        assert "google.rpc.retryinfo-bin" in trailers
        assert c.get("/healthz")[0] == 200
        assert _health(c, "lastactive.v1.ActivityQuery") == NOT_SERVING
        assert _health(c, "opentelemetry.proto.collector.metrics.v1.MetricsService") == SERVING

        last_input(c, "s1", 0)  # acknowledged (200) while its stored record is not loaded

        store.gate.set()
        wait_for(lambda: c.get("/readyz")[0] == 200, what="loaded")
        assert _health(c, "lastactive.v1.ActivityQuery") == SERVING
        s1 = c.session("s1")
        assert s1 is not None
        assert abs(_ns(s1["first_seen"]) - (hour_ago - S)) < S // 1000  # the stored record
        assert _ns(s1["last_active"]) > hour_ago + 3000 * S  # merged with the export
        assert c.session(f"s{LOAD_PAGE + 5}") is not None  # the second page too
        assert c.get("/v1/sessions?limit=1")[1]["sessions"][0]["id"] == "s1"
    finally:
        c.stop()
    (again,) = [r for r in GatedStore(db).load() if r.id == "s1"]
    assert again.first_seen == hour_ago - S and dict(again.sources)["input"] > hour_ago


class _Reading(GatedStore):
    """A gated store that says when a read started and when it ended."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.started, self.ended = threading.Event(), threading.Event()

    def load_page(
        self, after: tuple[str, str] | None, size: int
    ) -> tuple[list[EntityRecord], tuple[str, str] | None]:
        self.started.set()
        try:
            return super().load_page(after, size)
        finally:
            self.ended.set()


def test_a_load_stopped_mid_read_ends_only_once_the_read_is_done(tmp_path: Path) -> None:
    _stored(tmp_path / "state.db", 10)
    store = _Reading(tmp_path / "state.db")
    state = ActivityState()
    engine = TransitionEngine(state, Policy(), time.time_ns)
    loader = StateLoader(store, state, engine, time.time_ns)

    async def run() -> None:
        task = asyncio.create_task(loader.run())
        while not store.started.is_set():
            await asyncio.sleep(0)
        task.cancel()  # serve stopping
        for _ in range(100):
            await asyncio.sleep(0)
        assert not task.done()  # the store must not close under its reader
        store.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert store.ended.is_set()

    asyncio.run(run())
    assert not loader.loaded.is_set()
    store.close()


@pytest.mark.parametrize(
    ("seconds_a_look", "most_a_turn"),
    [(2 * TURN_S, LOAD_CHUNK), (TURN_S / 3.5, 4 * LOAD_CHUNK), (0.0, 45)],
)
def test_the_load_yields_the_event_loop_once_a_turn_has_taken_its_time(
    tmp_path: Path, seconds_a_look: float, most_a_turn: int
) -> None:
    """A turn of the load ends once it has taken TURN_S, however few records it merged: a
    timer that moves more than TURN_S at each look ends a turn after every chunk, one that
    moves a bit over a quarter of it after four chunks, and one that stands still only at the
    page's end (45 records: one page)."""
    _stored(tmp_path / "state.db", 45)
    store = SqliteStore(tmp_path / "state.db")
    state = ActivityState()
    engine = TransitionEngine(state, Policy(), time.time_ns)
    looks = itertools.count()
    loader = StateLoader(store, state, engine, time.time_ns, lambda: next(looks) * seconds_a_look)

    async def run() -> list[int]:
        seen = []  # loaded so far, at each of another task's turns
        task = asyncio.create_task(loader.run())
        while not task.done():
            seen.append(loader.entities)
            await asyncio.sleep(0)
        await task
        return [*seen, loader.entities]

    seen = asyncio.run(run())
    store.close()
    assert seen[-1] == 45 and len(state.entities[Kind.SESSION]) == 45
    assert max(b - a for a, b in itertools.pairwise(seen)) == most_a_turn
