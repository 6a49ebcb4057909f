"""Watch subscribers that fall behind: coalesced per entity, bounded, resync when far behind;
snapshots in pages."""

from __future__ import annotations

import asyncio
import gc

from lastactive.collector._state import ActivityState, Identity, Kind
from lastactive.collector._transitions import (
    SNAPSHOT_PAGE,
    Transition,
    TransitionEngine,
    TransitionField,
)
from lastactive.collector._watch import (
    QUEUE_MAX,
    RESYNC,
    KeepaliveEvent,
    ResyncEvent,
    SnapshotEvent,
    TransitionEvent,
    WatchHub,
    engine_pages,
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
        events = watch_events(hub, engine_pages(engine), keepalive=0.05)
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


def test_a_subscriber_a_little_behind_gets_every_transition_in_order() -> None:
    def change(previous: str, current: str, at: int) -> Transition:
        return Transition(at, "session", "s1", "h", TransitionField.STATE, previous, current,
                          "r", None)  # fmt: skip

    async def scenario() -> None:
        hub = WatchHub(maxsize=10)
        sub = hub.subscribe()
        flaps = [change("active", "idle", 1), change("idle", "active", 2),
                 change("active", "idle", 3)]  # fmt: skip
        hub.publish(flaps)
        assert [await sub.read(0) for _ in range(3)] == flaps and not sub.coalescing

    asyncio.run(scenario())


def test_a_snapshot_comes_in_pages() -> None:
    async def scenario() -> None:
        state = ActivityState()
        half = SNAPSHOT_PAGE // 2
        for i in range(2 * SNAPSHOT_PAGE + half):
            state.resolve(Identity(session_id=f"s{i}"), 5 * S)
        engine = TransitionEngine(state, Policy(), lambda: 6 * S)
        engine.tick()
        events = watch_events(WatchHub(), engine_pages(engine), keepalive=0.05)
        pages = [await anext(events) for _ in range(3)]
        assert all(isinstance(p, SnapshotEvent) for p in pages)
        assert [(len(p.states), p.more) for p in pages] == [  # type: ignore[union-attr]
            (SNAPSHOT_PAGE, True),
            (SNAPSHOT_PAGE, True),
            (half, False),
        ]
        assert isinstance(await anext(events), KeepaliveEvent)
        await events.aclose()

    asyncio.run(scenario())


def _engine() -> TransitionEngine:
    state = ActivityState()
    state.activity(state.resolve(Identity(session_id="s1"), 5 * S), "input", 5 * S)
    engine = TransitionEngine(state, Policy(), lambda: 6 * S)
    engine.tick()
    return engine


def test_a_watcher_resuming_after_an_event_id_gets_what_it_missed_once() -> None:
    async def scenario() -> None:
        hub, engine = WatchHub(), _engine()
        events = watch_events(hub, engine_pages(engine), keepalive=0.05)
        snapshot = await anext(events)
        assert isinstance(snapshot, SnapshotEvent) and snapshot.event_id == f"{hub.epoch}.0"
        hub.publish([transition(i) for i in range(1, 6)])
        got = [await anext(events) for _ in range(2)]
        assert [(e.transition.id, e.event_id) for e in got] == [  # type: ignore[union-attr]
            ("s1", f"{hub.epoch}.1"), ("s2", f"{hub.epoch}.2")
        ]  # fmt: skip
        await events.aclose()  # the watcher goes away after s2...
        hub.publish([transition(i) for i in range(6, 9)])  # ...and misses these
        resumed = watch_events(hub, engine_pages(engine), keepalive=0.05, after=got[-1].event_id)
        assert isinstance(await anext(resumed), KeepaliveEvent)  # no snapshot
        rest = [await anext(resumed) for _ in range(6)]
        assert [e.transition.id for e in rest] == [f"s{i}" for i in range(3, 9)]  # type: ignore[union-attr]
        assert [e.event_id for e in rest] == [f"{hub.epoch}.{i}" for i in range(3, 9)]  # type: ignore[union-attr]
        assert isinstance(await anext(resumed), KeepaliveEvent)  # nothing twice
        await resumed.aclose()
        # from the snapshot's id: everything after the snapshot, filtered
        picky = watch_events(hub, engine_pages(engine), session_id="s7", keepalive=0.05,
                             after=snapshot.event_id)  # fmt: skip
        assert isinstance(await anext(picky), KeepaliveEvent)
        only = await anext(picky)
        assert isinstance(only, TransitionEvent) and only.transition.id == "s7"
        await picky.aclose()

    asyncio.run(scenario())


def test_the_resume_log_is_out_of_the_cyclic_gcs_sight_and_gives_back_its_transitions() -> None:
    hub, engine = WatchHub(), _engine()
    state, hibernate = TransitionField.STATE, TransitionField.HIBERNATE
    sent = [
        Transition(7 * S, Kind.SESSION, "s1", "h", state, "active", "idle", "r", None),
        Transition(8 * S, Kind.HOST, "h", None, hibernate, "false", "true", "q", 9),
    ]
    hub.publish(sent)
    gc.collect()
    assert not any(gc.is_tracked(entry) for entry in hub._log)  # never in a full collection

    async def scenario() -> list[Transition]:
        events = watch_events(hub, engine_pages(engine), keepalive=0.05, after=f"{hub.epoch}.0")
        assert isinstance(await anext(events), KeepaliveEvent)
        got = [(await anext(events)).transition for _ in sent]  # type: ignore[union-attr]
        await events.aclose()
        return got

    got = asyncio.run(scenario())
    assert got == sent
    assert [type(t.field) for t in got] == [TransitionField, TransitionField]


def test_an_id_the_hub_cannot_resume_from_gets_resync_and_a_snapshot() -> None:
    async def scenario() -> None:
        hub, engine = WatchHub(resume_log=4), _engine()
        hub.publish([transition(i) for i in range(1, 11)])  # the log keeps 7..10
        for after in ("other.3", f"{hub.epoch}.5", f"{hub.epoch}.11", f"{hub.epoch}.x", "x"):
            events = watch_events(hub, engine_pages(engine), keepalive=0.05, after=after)
            kinds = [type(await anext(events)) for _ in range(2)]
            assert kinds == [ResyncEvent, SnapshotEvent], after
            await events.aclose()
        events = watch_events(hub, engine_pages(engine), keepalive=0.05, after=f"{hub.epoch}.6")
        assert isinstance(await anext(events), KeepaliveEvent)  # 7..10 are all there
        assert [(await anext(events)).transition.id for _ in range(4)] == [  # type: ignore[union-attr]
            "s7", "s8", "s9", "s10"
        ]  # fmt: skip
        await events.aclose()

    asyncio.run(scenario())


def test_ids_of_a_watcher_behind_are_watermarks_so_a_resume_leaves_no_gap() -> None:
    """Coalesced while far behind (here: 3 waiting), events come in the order of each entity's
    first unread change, and each id is a watermark: everything numbered up to it was sent.
    Resuming after any of them reaches every entity's latest condition (a coalesced one may
    come twice)."""

    def change(i: int, previous: str, current: str) -> Transition:
        return Transition(0, "session", f"s{i}", "h", TransitionField.STATE, previous, current,
                          "r", None)  # fmt: skip

    async def scenario() -> None:
        hub, engine = WatchHub(maxsize=3), _engine()
        events = watch_events(hub, engine_pages(engine), keepalive=0.05)
        await anext(events)  # the snapshot
        hub.publish([change(1, "active", "idle"), change(2, "active", "idle"),
                     change(1, "idle", "hibernated"), change(3, "active", "idle")])  # fmt: skip
        got = [await anext(events) for _ in range(3)]
        assert [(e.transition.id, e.transition.current, e.event_id) for e in got] == [  # type: ignore[union-attr]
            ("s1", "hibernated", f"{hub.epoch}.1"),  # s2 (seq 2) not sent yet
            ("s2", "idle", f"{hub.epoch}.3"),  # s1's second change (3) went with the first
            ("s3", "idle", f"{hub.epoch}.4"),
        ]
        await events.aclose()
        for i, sent in enumerate(got):  # disconnected right after event i
            resumed = watch_events(hub, engine_pages(engine), keepalive=0.05, after=sent.event_id)
            assert isinstance(await anext(resumed), KeepaliveEvent)
            latest = {}
            for e in got[: i + 1]:
                latest[e.transition.id] = e.transition.current  # type: ignore[union-attr]
            while not isinstance(e := await anext(resumed), KeepaliveEvent):
                latest[e.transition.id] = e.transition.current  # type: ignore[union-attr]
            assert latest == {"s1": "hibernated", "s2": "idle", "s3": "idle"}, i
            await resumed.aclose()

    asyncio.run(scenario())


def test_a_shared_hub_resumes_an_id_it_has_not_reached_yet() -> None:
    """Replicas publish one outbox, each at its own pace: a watcher resuming on a replica that
    is behind the one it came from gets what follows its id once this one gets there."""

    async def scenario() -> None:
        hub, engine = WatchHub(), _engine()
        hub.begin_at(0, "outbox")
        events = watch_events(hub, engine_pages(engine), keepalive=0.05, after="outbox.3")
        assert isinstance(await anext(events), KeepaliveEvent)  # resumed, no snapshot
        hub.publish([transition(i) for i in range(1, 6)], 1)
        got = [await anext(events) for _ in range(2)]
        assert [(e.transition.id, e.event_id) for e in got] == [  # type: ignore[union-attr]
            ("s4", "outbox.4"), ("s5", "outbox.5")
        ]  # fmt: skip
        assert isinstance(await anext(events), KeepaliveEvent)
        await events.aclose()

    asyncio.run(scenario())
