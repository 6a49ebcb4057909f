"""The transition engine with a fake clock: transitions fire when due, no tick scans everything."""

from __future__ import annotations

import random

import pytest

from lastactive.collector._ages import RECENT_S
from lastactive.collector._state import ActivityState, Identity, Kind
from lastactive.collector._transitions import (
    DECISIONS_SLICE,
    RECENT_BUDGET,
    TICK_BUDGET,
    TransitionEngine,
)
from lastactive.collector.policy import Decisions, Policy, Rules, decide
from lastactive.conventions import ActivityClass
from tests.helpers import decisions_evaluations, slices_of

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


def _fleet_walk(state: ActivityState, engine: TransitionEngine) -> tuple[dict, dict]:
    """What the indexes replace: counts by walking every session."""
    by_state: dict[str, int] = {}
    by_host: dict[tuple[str, str], int] = {}
    for e in state.entities[Kind.SESSION].values():
        c = engine.condition_of(e)
        if c is not None:
            by_state[c.state] = by_state.get(c.state, 0) + 1
            key = (e.host_id or "", c.state)
            by_host[key] = by_host.get(key, 0) + 1
    return by_state, by_host


@pytest.mark.parametrize("seed", [7, 9, 11])
def test_indexed_decisions_and_counts_match_a_walk_of_every_session(seed: int) -> None:
    """Deadlines move with activity, holds start and end, sessions exit, start again and are
    purged, a session moves host, ticks run out of budget: at every step the engine's indexed
    answers equal those computed over every entity."""
    rng = random.Random(seed)
    state, engine, clock = setup(idle_after=60, hibernate_after=600, after_close=120)
    hosts = ["h0", "h1", "h2"]
    for step in range(300):
        clock.now += rng.randrange(0, 90) * S
        for _ in range(rng.randrange(1, 8)):
            sid = f"s{rng.randrange(40)}"
            ents = state.resolve(Identity(session_id=sid, host_id=rng.choice(hosts)), clock.now)
            action = rng.randrange(6)
            if action == 0:
                state.activity(ents, "input", clock.now - rng.randrange(0, 30) * S)
            elif action == 1:
                state.hold(ents, "client", "c", 0, clock.now)
            elif action == 2:
                state.hold(ents, "client", "c", clock.now, clock.now)  # released
            elif action == 3:
                state.activity(ents, "exit", clock.now)
            elif action == 4:
                state.activity(ents, "start", clock.now)
            else:
                state.seen(ents, clock.now)
        engine.tick(rng.choice([None, 1, 5]))
        while engine.behind and rng.random() < 0.8:  # else answered with the tick behind
            engine.tick(3)
        if step % 25 == 0:
            engine.forget(state.purge(clock.now, 1800 * S)[0])
        within = rng.choice([0, 60, 600, 3600]) * S
        limit = rng.choice([None, 1, 2, 3, 5, 10])
        fast = engine.decisions(clock.now, within, limit)
        full = decide(state.views(clock.now), engine._policy, clock.now, within)
        assert fast.truncated == (limit is not None and max(map(len, full[:3])) > limit), step
        for got, want in zip(fast[:3], full[:3], strict=True):
            assert [d.view.id for d in got] == [d.view.id for d in want][:limit], step
        if engine.behind:
            continue  # the counts say what the last evaluations said
        by_state, by_host = _fleet_walk(state, engine)
        assert {k: v for k, v in engine.sessions_by_state.items() if v} == by_state
        assert engine.host_sessions == by_host
        for host in hosts:
            on = {e.id for e in engine.on_host(host)}
            assert on == {e.id for e in state.entities[Kind.SESSION].values()
                          if e.host_id == host}  # fmt: skip


def test_a_plainly_active_session_touched_again_is_not_evaluated() -> None:
    state, engine, clock = setup(idle_after=60)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "input", T0)
    engine.tick()
    evaluated = engine.evaluations
    clock.now = T0 + 10 * S
    state.activity(ents, "input", clock.now)
    assert engine.tick() == [] and engine.evaluations == evaluated
    clock.now = T0 + 60 * S  # its check, scheduled at the first evaluation: still active
    assert engine.tick() == [] and engine.evaluations == evaluated + 1
    clock.now = T0 + 70 * S
    assert [t.current for t in engine.tick()] == ["idle"]


def test_decisions_with_a_limit_see_a_deadline_moved_while_the_tick_is_behind() -> None:
    """A session kept active after its last evaluation has an indexed deadline earlier than
    its own; once that passes with its check not yet run, the limited walk of what is due
    now stops before it, and it must still be listed due soon."""
    state, engine, clock = setup(idle_after=60, hibernate_after=120)
    for i in range(3):  # due now, earlier than the kept one's indexed deadline
        state.activity(state.resolve(Identity(session_id=f"old{i}"), T0), "input", T0 - 60 * S)
    kept = state.resolve(Identity(session_id="kept"), T0)
    state.activity(kept, "input", T0)
    engine.tick()
    clock.now = T0 + 50 * S
    state.activity(kept, "input", clock.now)
    engine.tick()  # plainly active: skipped, its indexed deadline stays T0 + 120 s
    clock.now = T0 + 130 * S  # no tick since: its check at T0 + 60 s is due
    fast = engine.decisions(clock.now, 600 * S, limit=1)
    full = decide(state.views(clock.now), engine._policy, clock.now, 600 * S, limit=1)
    assert [d.view.id for d in full.due_soon] == ["kept"]
    assert [[d.view.id for d in got] for got in fast[:3]] == [
        [d.view.id for d in want] for want in full[:3]
    ]


def _evaluated_by_decisions(
    monkeypatch: pytest.MonkeyPatch, engine: TransitionEngine, now: int, limit: int
) -> tuple[Decisions, list[str]]:
    evaluated = decisions_evaluations(monkeypatch)
    return engine.decisions(now, 600 * S, limit), evaluated


def test_decisions_stop_inside_a_tie_of_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    """1000 sessions share one deadline (a fleet's sessions idle since the same second): the
    walk stops after ``limit + 1`` of them, in the lists' order (by id), not after all."""
    state, engine, clock = setup(idle_after=60, hibernate_after=120)
    for i in reversed(range(1000)):
        state.activity(state.resolve(Identity(session_id=f"s{i:04d}"), T0), "input", T0)
    engine.tick()
    clock.now = T0 + 300 * S
    engine.tick()
    got, evaluated = _evaluated_by_decisions(monkeypatch, engine, clock.now, 3)
    assert [d.view.id for d in got.hibernate] == ["s0000", "s0001", "s0002"] and got.truncated
    assert evaluated == ["s0000", "s0001", "s0002", "s0003"]


def _sliced_fleet(n: int) -> tuple[ActivityState, TransitionEngine, Clock]:
    """``n`` sessions due now (``due0000`` the latest deadline) and ``n`` due soon."""
    state, engine, clock = setup(idle_after=60, hibernate_after=600)
    for i in range(n):
        due = state.resolve(Identity(session_id=f"due{i:04d}"), T0)
        state.activity(due, "input", T0 - (700 + i) * S)
        soon = state.resolve(Identity(session_id=f"soon{i:04d}"), T0)
        state.activity(soon, "input", T0 - (1 + i) * S)
    engine.tick()
    return state, engine, clock


def test_decisions_are_made_a_slice_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three and a half slices' worth of sessions due now and as many due soon: no slice
    evaluates more than DECISIONS_SLICE (the index is read a slice at a time too), and the
    answer is the one over every entity."""
    n = DECISIONS_SLICE * 7 // 2
    state, engine, _ = _sliced_fleet(n)
    evaluated = decisions_evaluations(monkeypatch)
    work = engine.decisions_sliced(T0, 600 * S)
    per_slice = []
    while True:
        before = len(evaluated)
        try:
            next(work)
        except StopIteration as done:
            got: Decisions = done.value
            break
        finally:
            per_slice.append(len(evaluated) - before)
    assert max(per_slice) == DECISIONS_SLICE and sum(per_slice) == 2 * n
    assert len(per_slice) == -(-2 * n // DECISIONS_SLICE) + 1  # the last slice finds no more
    full = decide(state.views(T0), engine._policy, T0, 600 * S)
    assert [[d.view.id for d in listed] for listed in got[:3]] == [
        [d.view.id for d in want] for want in full[:3]
    ]
    assert len(got.hibernate) == len(got.due_soon) == n


def test_decisions_take_what_changes_between_their_slices() -> None:
    """Between two slices a session already evaluated is used again (listed as it was), one
    not reached yet is used (evaluated afresh: not due) and one is evicted (not listed), and
    a tick re-indexes what it evaluates: each session is listed once at most, none missed."""
    n = DECISIONS_SLICE * 2
    state, engine, clock = _sliced_fleet(n)
    work = engine.decisions_sliced(T0, 600 * S)
    next(work)  # the earliest deadlines: due{n-1} down to due{n-DECISIONS_SLICE}
    clock.now = T0 + S
    state.take_dirty(), state.take_touched()  # committed and evaluated
    assert state.evict(state.entities[Kind.SESSION]["due0001"], clock.now)
    for sid in (f"due{n - 1:04d}", "due0000"):
        state.activity(state.resolve(Identity(session_id=sid), clock.now), "input", clock.now)
    engine.tick()
    _, got = slices_of(work)
    assert [d.view.id for d in got.hibernate] == [f"due{i:04d}" for i in reversed(range(2, n))]
    assert [d.view.id for d in got.due_soon] == [f"soon{i:04d}" for i in reversed(range(n))]


def test_decisions_do_not_evaluate_a_plainly_active_session_touched_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What the tick would skip, decisions skip: its indexed deadline is no later than its
    own, so the walk finds it when it is due within the window (and not otherwise)."""
    state, engine, clock = setup(idle_after=60, hibernate_after=900)
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "input", T0)
    engine.tick()
    clock.now = T0 + 10 * S
    state.activity(ents, "input", clock.now)
    got, evaluated = _evaluated_by_decisions(monkeypatch, engine, clock.now, 10)
    assert evaluated == [] and got == ([], [], [], False)  # indexed at T0 + 900 s
    clock.now = T0 + 400 * S
    state.activity(ents, "input", clock.now)
    got, evaluated = _evaluated_by_decisions(monkeypatch, engine, clock.now, 10)
    assert evaluated == ["s"]  # by the walk of the due soon (indexed at T0 + 900 s) ...
    assert got.due_soon == []  # ... and evaluated afresh: due at T0 + 1300 s
    state.activity(ents, "exit", clock.now)  # not plainly active any more
    clock.now = T0 + 401 * S
    _, evaluated = _evaluated_by_decisions(monkeypatch, engine, clock.now, 10)
    assert evaluated == ["s"]


def test_a_tick_with_a_budget_leaves_the_rest_for_the_next_call() -> None:
    state, engine, clock = setup(idle_after=60)
    for i in range(10):
        state.activity(state.resolve(Identity(session_id=f"s{i}"), T0), "input", T0)
    assert len(engine.tick(4)) == 4 and engine.behind
    assert len(engine.tick(4)) == 4 and engine.behind
    assert len(engine.tick(4)) == 2 and not engine.behind
    clock.now = T0 + 60 * S  # all ten go idle: due from the timer heap, in slices too
    assert len(engine.tick(6)) == 6 and engine.behind
    assert len(engine.tick(6)) == 4 and not engine.behind


def test_a_tick_runs_the_recent_activity_checks_that_came_due_a_slice_at_a_time() -> None:
    """So a scrape's reading of the recent-activity counts finds none left to run (at 1M
    sessions in use ~3k come due a second; left to the scrape they held the loop)."""
    state, engine, clock = setup(idle_after=3600)
    n = RECENT_BUDGET * 2 + 1
    for i in range(n):
        state.activity(state.resolve(Identity(session_id=f"s{i}"), T0), "input", T0)
    engine.tick()
    clock.now = T0 + (RECENT_S + 1) * S  # every session's check is due
    assert engine.tick(TICK_BUDGET) == [] and engine.behind
    assert engine.tick(TICK_BUDGET) == [] and engine.behind
    assert engine.tick(TICK_BUDGET) == [] and not engine.behind  # the last one
    assert not state.age_recent(clock.now, 0)  # none left for a reading
    assert state.recent(clock.now)[ActivityClass.ENGAGEMENT] == 0


def test_snapshot_pages_cover_the_filter_once() -> None:
    state, engine, _ = setup()
    for i in range(25):
        state.resolve(Identity(session_id=f"s{i}", host_id=f"h{i % 2}"), T0)
    engine.tick()
    pages = list(engine.snapshot_pages(size=10))
    assert [len(p) for p in pages] == [10, 10, 7]  # 25 sessions and 2 hosts
    assert len({s.view.id for p in pages for s in p}) == 27
    on_h1 = [s.view.id for p in engine.snapshot_pages("h1", size=4) for s in p]
    assert sorted(on_h1) == sorted(["h1", *(f"s{i}" for i in range(1, 25, 2))])
    assert [len(p) for p in engine.snapshot_pages(session_id="nope")] == [0]
