"""The transition engine with a fake clock: transitions fire when due, no tick scans everything."""

from __future__ import annotations

from lastactive.collector._state import ActivityState, Identity
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector.policy import Policy, Rules

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


def test_time_spent_runaway_counts_the_spells_not_the_window() -> None:
    """Issue 14: a session runaway for a while shows that while, not the whole hour: the time
    between its runaway transitions."""
    state, engine, clock = setup(runaway_bytes_per_second=1000)
    (s,) = ents = state.resolve(Identity(session_id="s"), T0)
    engine.tick()
    flips: list[int] = []
    for spell in (0, 100):  # two bursts of 3 s
        for i in range(3):
            clock.now = T0 + (spell + i) * S
            state.io(ents, False, 100_000, clock.now)
            flips += [t.at for t in engine.tick() if t.field == "runaway"]
        for quiet in range(3, 60):  # ticks every second until the 30 s window empties
            clock.now = T0 + (spell + quiet) * S
            flips += [t.at for t in engine.tick() if t.field == "runaway"]
        if spell == 0:
            assert engine.runaway_ns(s, clock.now) == flips[1] - flips[0]
    assert len(flips) == 4
    total = engine.runaway_ns(s, T0 + 3600 * S)
    assert total == flips[1] - flips[0] + flips[3] - flips[2] < 2 * 40 * S
    assert total == engine.runaway_total_ns(T0 + 3600 * S)
    engine.forget([s])  # purged: the fleet's counter keeps it, never decreasing
    assert engine.runaway_total_ns(T0 + 7200 * S) == total
