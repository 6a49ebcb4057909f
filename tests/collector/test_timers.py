"""The engine's timer: checks run at their exact due time, each once, stale entries dropped."""

from __future__ import annotations

import random

from lastactive.collector._state import Entity, Kind
from lastactive.collector._timers import SLOT_NS, Timers

T0 = 1_800_000_000_000_000_000


def session(i: int) -> Entity:
    return Entity(Kind.SESSION, f"s{i}", T0, T0)


def test_a_check_runs_at_its_due_time_not_at_its_slots_start() -> None:
    timers, e = Timers(), session(0)
    due = T0 + SLOT_NS // 2  # mid-slot
    timers.schedule(e, due)
    assert not timers.any_due(due - 1) and timers.pop_due(due - 1, 10) == []
    assert list(timers.due(due - 1)) == [] and e.check_at == due  # waiting, still scheduled
    assert timers.any_due(due) and list(timers.due(due)) == [e]
    assert timers.pop_due(due, 10) == [e] and e.check_at is None
    assert timers.pop_due(due + 10 * SLOT_NS, 10) == [] and not timers.any_due(due + SLOT_NS)


def test_an_earlier_check_replaces_a_later_one_and_the_later_entry_is_dropped() -> None:
    timers, e = Timers(), session(0)
    timers.schedule(e, T0 + 5 * SLOT_NS)
    timers.schedule(e, T0 + 9 * SLOT_NS)  # later than the pending one: nothing to do
    timers.schedule(e, T0 + 2 * SLOT_NS)  # earlier: the first entry goes stale
    assert e.check_at == T0 + 2 * SLOT_NS
    assert timers.pop_due(T0 + 3 * SLOT_NS, 10) == [e]
    # Evaluated, nothing more scheduled: the stale entry at 5 slots is not a check.
    assert not list(timers.due(T0 + 6 * SLOT_NS)) and timers.pop_due(T0 + 6 * SLOT_NS, 10) == []
    assert not timers.any_due(T0 + 6 * SLOT_NS)


def test_the_budget_leaves_the_rest_for_the_next_call() -> None:
    timers = Timers()
    es = [session(i) for i in range(7)]
    for i, e in enumerate(es):
        timers.schedule(e, T0 + i * SLOT_NS // 3)
    now = T0 + 3 * SLOT_NS
    got = timers.pop_due(now, 3)
    assert len(got) == 3 and timers.any_due(now)
    got += timers.pop_due(now, 3) + timers.pop_due(now, 3)
    assert sorted(e.id for e in got) == sorted(e.id for e in es) and not timers.any_due(now)


def test_against_a_sorted_model_with_random_schedules_and_clock_jumps() -> None:
    rng = random.Random(7)
    timers = Timers()
    es = [session(i) for i in range(200)]
    checks: dict[int, int] = {}  # the model: entity index -> its earliest pending check
    now = T0
    for _ in range(3000):
        if rng.random() < 0.6:
            i = rng.randrange(len(es))
            due = now + rng.randrange(1, 8 * SLOT_NS)
            timers.schedule(es[i], due)
            checks[i] = min(due, checks.get(i, due))
        else:
            now += rng.randrange(0, 2 * SLOT_NS)
            expected = {i for i, due in checks.items() if due <= now}
            assert timers.any_due(now) == bool(expected)
            assert {int(e.id[1:]) for e in timers.due(now)} == expected
            got = timers.pop_due(now, rng.randrange(1, 40))
            ids = [int(e.id[1:]) for e in got]
            assert len(ids) == len(set(ids)) and set(ids) <= expected  # each once, only due
            for i in ids:
                del checks[i]
    assert {i for i, e in enumerate(es) if e.check_at is not None} == set(checks)
