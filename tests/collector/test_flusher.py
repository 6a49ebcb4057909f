"""Group commit with a fake clock: an export waits for its commit, a failed write loses nothing
and fails the waiting exports retryably, counter baselines persist with the bytes they counted,
retention purges memory and store together."""

from __future__ import annotations

import asyncio

import pytest

from lastactive.collector._flusher import RECORD_SLICE, Flusher, StoreUnavailableError
from lastactive.collector._record import EntityRecord, StreamRecord
from lastactive.collector._state import ActivityState, Identity, stream_text
from lastactive.conventions import AgentStatus, Source
from tests.helpers import FlakyStore

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_a_failed_flush_puts_the_records_back_and_the_next_one_writes_them() -> None:
    state, store = ActivityState(), FlakyStore()
    flusher = Flusher(state, store, 1.0, retention_ns=3600 * S, clock=lambda: T0)
    state.activity(state.resolve(Identity(session_id="s", host_id="h"), T0), Source.INPUT, T0)
    store.fail = 1
    assert asyncio.run(flusher.flush()) == 0 and store.load() == []
    assert flusher.failure == "the state store failed: disk full"  # /readyz says so
    assert asyncio.run(flusher.flush()) == 2  # the session and its host, written now
    assert flusher.failure is None
    assert {r.id for r in store.load()} == {"s", "h"}
    assert (flusher.flushes, flusher.last_rows) == (1, 2)
    assert asyncio.run(flusher.flush()) == 0  # nothing changed since


def test_purge_forgets_ended_sessions_past_retention_in_memory_and_in_the_store() -> None:
    state, store = ActivityState(), FlakyStore()
    flusher = Flusher(state, store, 1.0, retention_ns=60 * S, clock=lambda: T0)
    done = state.resolve(Identity(session_id="done"), T0)
    state.agent_event(done, AgentStatus.COMPLETED, Source.EXIT, T0)
    alive = state.resolve(Identity(session_id="alive"), T0 - 3600 * S)
    state.activity(alive, Source.START, T0 - 3600 * S)  # old, but never ended: kept
    asyncio.run(flusher.flush())
    assert asyncio.run(flusher.purge(T0 + 30 * S)) == 0  # within retention
    assert asyncio.run(flusher.purge(T0 + 61 * S)) == 1
    assert [e.id for e in state.all_entities()] == ["alive"]
    assert [r.id for r in store.load()] == ["alive"]


def test_stop_flushes_what_changed_last() -> None:
    async def scenario() -> list[EntityRecord]:
        state, store = ActivityState(), FlakyStore()
        flusher = Flusher(state, store, 3600.0, retention_ns=60 * S, clock=lambda: T0)
        flusher.start()
        state.activity(state.resolve(Identity(session_id="s"), T0), Source.OUTPUT, T0)
        await flusher.stop()
        return store.load()

    (record,) = asyncio.run(scenario())
    assert dict(record.sources) == {"output": T0}


def test_durable_returns_once_the_change_is_committed_and_fails_retryably_when_it_is_not() -> None:
    async def scenario() -> None:
        state, store = ActivityState(), FlakyStore()
        flusher = Flusher(state, store, 3600.0, retention_ns=60 * S, clock=lambda: T0)
        flusher.start()
        state.activity(state.resolve(Identity(session_id="a"), T0), Source.INPUT, T0)
        await asyncio.wait_for(flusher.durable(), 5)  # long before the 1 h interval
        assert [r.id for r in store.load()] == ["a"]
        store.fail = 1
        state.activity(state.resolve(Identity(session_id="b"), T0), Source.INPUT, T0)
        with pytest.raises(StoreUnavailableError, match="disk full"):
            await asyncio.wait_for(flusher.durable(), 5)
        await asyncio.wait_for(flusher.durable(), 5)  # the next commit writes it
        assert sorted(r.id for r in store.load()) == ["a", "b"]
        await flusher.stop()

    asyncio.run(scenario())


def test_one_commit_answers_every_export_waiting_for_it() -> None:
    async def scenario() -> int:
        state, store = ActivityState(), FlakyStore()
        flusher = Flusher(state, store, 3600.0, retention_ns=60 * S, clock=lambda: T0)
        flusher.start()
        waits = []
        for i in range(50):
            state.activity(state.resolve(Identity(session_id=f"s{i}"), T0), Source.INPUT, T0)
            waits.append(asyncio.ensure_future(flusher.durable()))
        await asyncio.wait_for(asyncio.gather(*waits), 5)
        await flusher.stop()
        return flusher.flushes

    assert asyncio.run(scenario()) <= 2  # the group, not one commit per export


def test_counter_baselines_survive_a_restart_so_bytes_are_neither_lost_nor_counted_twice() -> None:
    store = FlakyStore()
    state = ActivityState(started_at=T0)
    ents = state.resolve(Identity(session_id="s"), T0)
    key = ("stream", "of", "s")
    for t, value in ((T0 + 1, 100), (T0 + 2, 150)):  # began after the collector: all counted
        counted = state.counter(key, T0, t, value, cumulative=True)
        assert counted is not None
        state.io(ents, True, int(counted[0]), t)
    store.save(state.take_dirty(), state.take_dirty_streams())
    (baseline,) = store.load_streams()
    assert baseline == StreamRecord(stream_text(key), T0, T0 + 2, 150)
    assert len(baseline.key) == 32  # a digest, however long the key

    again = ActivityState(started_at=T0 + 10)  # restarted: the stream's start is before it
    again.load(store.load())
    again.load_streams(store.load_streams())
    assert again.counter(key, T0, T0 + 2, 150, cumulative=True) is None  # a replay: stale
    assert again.counter(key, T0, T0 + 3, 180, cumulative=True) == (30, T0 + 2)  # from 150
    (session,) = again.all_entities()
    assert session.input_bytes == 150  # as committed; the rise of 30 is the caller's to add


def test_a_large_commit_is_snapshotted_in_slices_and_a_change_between_them_is_in_it() -> None:
    """The loop runs between slices of RECORD_SLICE records: an export applied meanwhile is
    in this commit, and the export waiting for it is answered by it."""
    n = RECORD_SLICE * 2 + 7
    state, store = ActivityState(), FlakyStore()
    flusher = Flusher(state, store, 1.0, retention_ns=3600 * S, clock=lambda: T0)
    ents = [state.resolve(Identity(session_id=f"s{i}"), T0) for i in range(n)]

    async def scenario() -> tuple[int, bool, int]:
        async def meanwhile() -> None:
            await asyncio.sleep(0)  # runs between two slices of the snapshot
            for e in ents:
                state.activity(e, Source.INPUT, T0 + S)
            await flusher.durable()

        side = asyncio.create_task(meanwhile())
        first = await flusher.flush()
        await asyncio.sleep(0)  # the answered export returns
        return first, side.done(), await flusher.flush()

    first, answered, second = asyncio.run(scenario())
    assert first == n and answered  # each session once, at its latest, and the export answered
    assert second == 0  # nothing left for the next commit
    assert {r.id: dict(r.sources).get("input") for r in store.load()} == {
        f"s{i}": T0 + S for i in range(n)
    }


def test_a_sliced_commit_holds_each_sessions_bytes_and_baseline_as_of_one_instant() -> None:
    """Counter points between two slices of a commit's snapshot raise sessions already
    snapshotted and their baselines: the commit still writes both as of one instant, so after
    a crash a retried point is neither lost (stale against a newer baseline) nor counted twice."""
    n = RECORD_SLICE * 2 + 7
    state, store = ActivityState(started_at=T0), FlakyStore()
    flusher = Flusher(state, store, 1.0, retention_ns=3600 * S, clock=lambda: T0)
    sessions = [state.resolve(Identity(session_id=f"s{i}"), T0) for i in range(n)]

    def point(i: int, t: int, value: int) -> None:
        counted = state.counter(("bytes", f"s{i}"), T0, t, value, cumulative=True)
        assert counted is not None
        state.io(sessions[i], True, int(counted[0]), t)

    for i in range(n):
        point(i, T0 + 1, 100)

    async def scenario() -> None:
        async def meanwhile() -> None:
            await asyncio.sleep(0)  # between two slices
            for i in range(n):
                point(i, T0 + 2, 130)

        side = asyncio.create_task(meanwhile())
        await flusher.flush()
        await side

    asyncio.run(scenario())
    stored_bytes = {r.id: r.input_bytes for r in store.load() if r.kind == "session"}
    baselines = {b.key: b.value for b in store.load_streams()}
    assert len(stored_bytes) == len(baselines) == n
    for i in range(n):  # each stream began after the collector: its bytes are its value
        assert stored_bytes[f"s{i}"] == baselines[stream_text(("bytes", f"s{i}"))] == 130
