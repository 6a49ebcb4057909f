"""The transition engine with a fake clock: transitions fire when due, no tick scans everything."""

from __future__ import annotations

import gc
import weakref

from lastactive.collector._state import ActivityState, Identity
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector.policy import Policy, Rules
from lastactive.conventions import AgentStatus, Source

S = 1_000_000_000
T0 = 1_800_000_000 * S


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> int:
        return self.now


def setup(**rules: object) -> tuple[ActivityState, TransitionEngine, Clock]:
    clock = Clock()
    state = ActivityState()
    engine = TransitionEngine(state, Policy(Rules(**rules)), clock)  # type: ignore[arg-type]
    return state, engine, clock


def changes(engine: TransitionEngine) -> list[tuple[str, str, str, str]]:
    return [(t.id, t.field, t.previous, t.current) for t in engine.tick()]


def test_active_idle_active_and_hibernate_due() -> None:
    state, engine, clock = setup(idle_after=60, hibernate_after=120)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "input", T0)
    assert changes(engine) == [("s", "state", "new", "active")]
    clock.now = T0 + 59 * S
    assert changes(engine) == []
    clock.now = T0 + 60 * S
    (t,) = engine.tick()
    assert (t.field, t.previous, t.current, t.at) == ("state", "active", "idle", T0 + 60 * S)
    clock.now = T0 + 70 * S
    state.activity(ents, "output", T0 + 70 * S)
    assert changes(engine) == [("s", "state", "idle", "active")]
    clock.now = T0 + 130 * S
    assert changes(engine) == [("s", "state", "active", "idle")]
    clock.now = T0 + 190 * S
    assert changes(engine) == [("s", "hibernate", "false", "true")]


def test_liveness_does_not_wake_and_costs_no_evaluation() -> None:
    state, engine, clock = setup(idle_after=60)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "output", T0)
    engine.tick()
    clock.now = T0 + 60 * S
    assert changes(engine) == [("s", "state", "active", "idle")]
    before = engine.evaluations
    for _ in range(10):
        clock.now += S
        state.activity(ents, "heartbeat", clock.now)
        state.activity(ents, "process", clock.now)
        assert changes(engine) == []
    assert engine.evaluations == before


def test_runaway_starts_and_stops() -> None:
    state, engine, clock = setup(runaway_bytes_per_second=1000)
    ents = state.resolve(Identity(session_id="s"), T0)
    engine.tick()
    for i in range(5):
        clock.now = T0 + i * S
        state.io(ents, False, 100_000, clock.now)
        engine.tick()
    clock.now = T0 + 5 * S
    assert not engine.tick()  # already reported
    clock.now = T0 + 40 * S  # quiet: the 30 s window empties
    assert ("s", "runaway", "true", "false") in changes(engine)


def test_lease_exempts_until_it_expires() -> None:
    state, engine, clock = setup(idle_after=60)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "output", T0)
    state.hold(ents, "lease", "L", T0 + 300 * S, T0)
    engine.tick()
    clock.now = T0 + 200 * S
    assert changes(engine) == []
    clock.now = T0 + 300 * S  # the lease ran out (its holder died): idle now
    assert changes(engine) == [("s", "state", "active", "idle")]


def test_ticks_do_not_scan_and_the_heap_stays_bounded() -> None:
    state, engine, clock = setup(idle_after=60, hibernate_after=3600)
    sessions = [state.resolve(Identity(session_id=f"s{i}"), T0) for i in range(1000)]
    for ents in sessions:
        state.activity(ents, "output", T0)
    engine.tick()
    first = engine.evaluations
    for _ in range(20):
        clock.now += S // 4
        engine.tick()
    assert engine.evaluations == first  # nothing touched, nothing due: no work
    clock.now = T0 + 60 * S
    assert len(engine.tick()) == 1000  # all go idle in one tick
    for _ in range(50):  # busy idle sessions being touched over and over
        clock.now += S
        for ents in sessions[:100]:
            state.activity(ents, "connection", clock.now)
            state.activity(ents, "input", clock.now - 120 * S)  # old, replayed: no change
        engine.tick()
    assert len(engine._heap) <= 2 * len(sessions)


def test_prime_learns_without_emitting() -> None:
    state, engine, clock = setup(idle_after=60)
    state.activity(state.resolve(Identity(session_id="s"), T0), "output", T0)
    engine.prime()
    assert engine.tick() == []
    clock.now = T0 + 60 * S
    assert changes(engine) == [("s", "state", "active", "idle")]


def test_an_exit_ends_the_session_and_clears_runaway_at_once() -> None:
    """Issue 10 (7): a runaway session that exits leaves runaway and active at its exit, not
    when its rate window drains or its retention ends."""
    state, engine, clock = setup(idle_after=60, runaway_bytes_per_second=1000)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "start", T0)
    state.io(ents, False, 100_000, T0)
    assert sorted(changes(engine)) == [
        ("s", "runaway", "false", "true"),
        ("s", "state", "new", "active"),
    ]
    clock.now = T0 + S
    state.activity(ents, "exit", T0 + S)
    state.process(ents, 7, 130)
    assert sorted(changes(engine)) == [
        ("s", "runaway", "true", "false"),
        ("s", "state", "active", "ended"),
    ]
    clock.now = T0 + 3600 * S
    assert changes(engine) == []  # final: no idle, no deadline
    (snap,) = engine.snapshot()
    assert snap.evaluation.state == "ended"
    assert snap.evaluation.reason.startswith("exited with code 130")


def test_an_exit_of_a_plainly_active_session_is_not_skipped() -> None:
    state, engine, clock = setup(idle_after=60)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "input", T0)
    engine.tick()
    clock.now = T0 + S
    state.agent_event(ents, AgentStatus.COMPLETED, Source.EXIT, T0 + S)
    assert changes(engine) == [("s", "state", "active", "ended")]


def test_purged_sessions_leave_no_trace() -> None:
    """Issue 10 (8): after the retention purge nothing in memory refers to the entity."""
    state, engine, clock = setup(idle_after=60, hibernate_after=7200, max_age=86400 * 30)
    ents = state.resolve(Identity(session_id="s", host_id="h"), T0)
    state.activity(ents, "input", T0)
    engine.tick()
    clock.now = T0 + S
    state.agent_event(ents, AgentStatus.COMPLETED, Source.EXIT, T0 + S)
    engine.tick()
    session = weakref.ref(ents[0])
    del ents
    day = 86400 * S
    clock.now = T0 + S + day
    gone = state.purge(clock.now, day)
    assert [e.id for e in gone] == ["s"]
    engine.forget(gone)
    del gone
    engine.tick()
    gc.collect()
    assert session() is None


def test_runaway_and_stuck_transitions_carry_their_own_reasons() -> None:
    state, engine, clock = setup(idle_after=60, stuck_after=30, runaway_bytes_per_second=1 << 20)
    ents = state.resolve(Identity(session_id="s", agent_id="codey"), T0)
    state.agent_event(ents, AgentStatus.ACTIVE, Source.START, T0)
    state.io(ents, False, 90 << 20, T0)  # 90 MiB in the 30 s window: 3.1 MB/s
    (runaway,) = [t for t in engine.tick() if t.field == "runaway"]
    assert runaway.reason == "output 3.1 MB/s over 30 s >= 1 MiB/s"
    clock.now = T0 + 31 * S
    (stuck,) = [t for t in engine.tick() if t.field == "stuck"]
    assert stuck.reason == "no progress for 31 s >= stuck_after 30 s"
