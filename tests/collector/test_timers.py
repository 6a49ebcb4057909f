"""The engine's timer: checks run at their exact due time, each once, stale entries dropped."""

from __future__ import annotations

import random

from lastactive.collector._state import Entity, Kind
from lastactive.collector._timers import LOOKS_PER_CHECK, SLOT_NS, Timers

T0 = 1_800_000_000_000_000_000


def session(i: int) -> Entity:
    return Entity(Kind.SESSION, f"s{i}", T0, T0)


def test_a_check_runs_at_its_due_time_not_at_its_slots_start() -> None:
    timers, e = Timers(), session(0)
    due = T0 + SLOT_NS // 2  # mid-slot
    timers.schedule(e, due)
    assert timers.pop_due(due - 1, 10) == [] and not timers.any_due(due - 1)  # looked, held
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
    for seed in range(8):
        rng = random.Random(seed)
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
                continue
            now += rng.randrange(0, 2 * SLOT_NS)
            expected = {i for i, due in checks.items() if due <= now}
            assert timers.any_due(now) or not expected
            assert {int(e.id[1:]) for e in timers.due(now)} == expected
            calls = 0
            while True:  # as the engine's catch-up: until nothing may be due
                got = timers.pop_due(now, rng.randrange(1, 40))
                ids = [int(e.id[1:]) for e in got]
                assert len(ids) == len(set(ids)) and set(ids) <= expected  # each once, only due
                for i in ids:
                    del checks[i]
                    expected.discard(i)
                calls += 1
                if rng.random() < 0.5 or not timers.any_due(now):
                    break
                assert calls < 1000
            if not timers.any_due(now):
                assert not expected
        assert {i for i, e in enumerate(es) if e.check_at is not None} == set(checks)


class _Counted(Entity):
    """An entity that counts how often its pending check is looked at."""

    __slots__ = ("_at",)
    reads = 0

    def __init__(self, i: int) -> None:
        super().__init__(Kind.SESSION, f"s{i}", T0, T0)
        self._at: int | None = None

    @property  # type: ignore[override]
    def check_at(self) -> int | None:
        _Counted.reads += 1
        return self._at

    @check_at.setter
    def check_at(self, value: int | None) -> None:
        self._at = value


def test_the_running_slots_checks_not_due_yet_are_looked_at_once_not_at_every_tick() -> None:
    timers = Timers()
    es = [_Counted(i) for i in range(1000)]
    due = T0 + SLOT_NS - 1  # all at the end of the slot (a fleet going idle in one second)
    for e in es:
        timers.schedule(e, due)
    now = T0 + SLOT_NS // 10
    _Counted.reads, calls = 0, 0
    while timers.any_due(now):  # a pass, in calls looking at 8 x LOOKS_PER_CHECK entries each
        assert timers.pop_due(now, 8) == []
        calls += 1
    assert calls == -(-len(es) // (8 * LOOKS_PER_CHECK)) and _Counted.reads == len(es)
    for _ in range(4):  # later ticks before they are due: the slot is held
        now += SLOT_NS // 5
        assert not timers.any_due(now) and timers.pop_due(now, 32) == []
        assert list(timers.due(now)) == []
    assert _Counted.reads == len(es)
    early = session(-1)  # an earlier check in the same slot ends the hold
    timers.schedule(early, now - 1)
    assert timers.any_due(now) and list(timers.due(now)) == [early]
    assert timers.pop_due(now, 32) == [early]
    got = []
    while batch := timers.pop_due(due, 32):
        got += batch
    assert sorted(e.id for e in got) == sorted(e.id for e in es) and not timers.any_due(due)
