"""Watch subscribers that fall behind: bounded queues and resync, in-process and on a real
server with a gRPC subscriber that never reads."""

from __future__ import annotations

import asyncio

from lastactive.collector._state import ActivityState, Identity
from lastactive.collector._transitions import Transition, TransitionEngine, TransitionField
from lastactive.collector._watch import (
    QUEUE_MAX,
    RESYNC,
    KeepaliveEvent,
    ResyncEvent,
    SnapshotEvent,
    WatchHub,
    watch_events,
)
from lastactive.collector.policy import Policy
from tests.helpers import S


def transition(i: int) -> Transition:
    return Transition(
        i, "session", f"s{i}", "h", TransitionField.STATE, "active", "idle", "r", None
    )


def test_a_subscriber_that_never_reads_is_bounded_and_told_to_resync() -> None:
    async def scenario() -> None:
        hub = WatchHub()
        stuck = hub.subscribe()
        picky = hub.subscribe(session_id="s7")
        hub.publish([transition(i) for i in range(100_000)])
        assert stuck.queue.qsize() <= QUEUE_MAX and hub.queued <= 2 * QUEUE_MAX
        assert stuck.overflows > 0 and picky.queue.qsize() == 1  # the filter applies
        assert stuck.queue.get_nowait() is RESYNC  # first thing it will read: resync

        state = ActivityState()
        state.activity(state.resolve(Identity(session_id="s1"), 5 * S), "input", 5 * S)
        engine = TransitionEngine(state, Policy(), lambda: 6 * S)
        engine.tick()
        events = watch_events(hub, engine, keepalive=0.05)
        first = await anext(events)
        assert isinstance(first, SnapshotEvent) and [s.view.id for s in first.states] == ["s1"]
        hub.publish([transition(i) for i in range(QUEUE_MAX + 1)])  # one too many
        kinds = [type(await anext(events)) for _ in range(2)]
        assert kinds == [ResyncEvent, SnapshotEvent]
        assert isinstance(await anext(events), KeepaliveEvent)
        await events.aclose()
        assert hub.subscribers == 2  # the generator unsubscribed itself

    asyncio.run(scenario())
