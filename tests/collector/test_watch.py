"""Watch subscribers that fall behind: coalesced per entity, bounded, resync when far behind;
snapshots in pages."""

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
        assert len(stuck.pending) <= QUEUE_MAX and hub.queued <= 2 * QUEUE_MAX
        assert stuck.overflows > 0 and len(picky.pending) == 1  # the filter applies
        assert await stuck.read(0) is RESYNC  # first thing it will read: resync

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


def test_a_subscriber_behind_gets_each_entity_once_with_its_latest_change() -> None:
    """A slow reader is not resynced: what it missed is coalesced per entity and field, in the
    order of the first change; a change that came back before it was read is not sent."""

    def change(i: int, previous: str, current: str, at: int) -> Transition:
        return Transition(
            at, "session", f"s{i}", "h", TransitionField.STATE, previous, current, "r", None
        )

    async def scenario() -> None:
        hub = WatchHub(maxsize=10)
        sub = hub.subscribe()
        for round_ in range(50):  # 5 sessions flapping, 250 transitions, maxsize 10
            for i in range(5):
                before, after = ("active", "idle") if round_ % 2 == 0 else ("idle", "active")
                hub.publish([change(i, before, after, round_)])
        hub.publish([change(0, "active", "idle", 98), change(0, "idle", "hibernated", 99)])
        assert sub.overflows == 0
        got = [await sub.read(0) for _ in range(len(sub.pending))]
        assert [(t.id, t.previous, t.current, t.at) for t in got] == [  # type: ignore[attr-defined]
            ("s0", "active", "hibernated", 99)  # active -> idle, then idle -> hibernated
        ]  # s1..s4 went active -> idle -> ... -> active: back where the reader saw them
        assert await sub.read(0.01) is None

    asyncio.run(scenario())


def test_a_snapshot_comes_in_pages() -> None:
    async def scenario() -> None:
        state = ActivityState()
        for i in range(2500):
            state.resolve(Identity(session_id=f"s{i}"), 5 * S)
        engine = TransitionEngine(state, Policy(), lambda: 6 * S)
        engine.tick()
        events = watch_events(WatchHub(), engine, keepalive=0.05)
        pages = [await anext(events) for _ in range(3)]
        assert all(isinstance(p, SnapshotEvent) for p in pages)
        assert [(len(p.states), p.more) for p in pages] == [  # type: ignore[union-attr]
            (1000, True),
            (1000, True),
            (500, False),
        ]
        assert isinstance(await anext(events), KeepaliveEvent)
        await events.aclose()

    asyncio.run(scenario())
