"""Write-behind with a fake clock: a failed write loses nothing, retention purges memory and
store together."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from lastactive.collector._flusher import Flusher
from lastactive.collector._record import EntityRecord
from lastactive.collector._state import ActivityState, Identity
from lastactive.collector.store import SqliteStore
from lastactive.conventions import AgentStatus, Source

S = 1_000_000_000
T0 = 1_800_000_000 * S


class FlakyStore(SqliteStore):
    """An in-memory SQLite store whose next ``fail`` saves raise."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.fail = 0

    def save(self, records: Sequence[EntityRecord]) -> None:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        super().save(records)


def test_a_failed_flush_puts_the_records_back_and_the_next_one_writes_them() -> None:
    state, store = ActivityState(), FlakyStore()
    flusher = Flusher(state, store, 1.0, retention_ns=3600 * S, clock=lambda: T0)
    state.activity(state.resolve(Identity(session_id="s", host_id="h"), T0), Source.INPUT, T0)
    store.fail = 1
    assert asyncio.run(flusher.flush()) == 0 and store.load() == []
    assert asyncio.run(flusher.flush()) == 2  # the session and its host, written now
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
    assert set(k[1] for k in state.entities) == {"alive"}
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
