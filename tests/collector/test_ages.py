"""The fleet aggregates kept as activity arrives equal a walk of every session."""

from __future__ import annotations

import bisect
import random

from lastactive.collector._activity import idle_since, latest, latest_by_class
from lastactive.collector._ages import IDLE_BUCKETS, RECENT_S, IdleHistogram
from lastactive.collector._state import ActivityState, Identity, Kind
from lastactive.conventions import ActivityClass

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _walk(state: ActivityState, now: int) -> tuple[dict[ActivityClass, int], list[int], int]:
    """What ``/metrics`` computed by walking every session (whole seconds)."""
    recent = dict.fromkeys(ActivityClass, 0)
    counts = [0] * (len(IDLE_BUCKETS) + 1)
    total = 0
    now_s = now // S
    for e in state.entities[Kind.SESSION].values():
        for cls, t in latest_by_class(e.source_pairs()).items():
            if t // S >= now_s - RECENT_S:
                recent[cls] += 1
        idle = max(0, now_s - idle_since(e.first_seen, latest(e.source_pairs())[1]) // S)
        counts[bisect.bisect_left(IDLE_BUCKETS, idle)] += 1
        total += idle
    return recent, counts, total


def test_recent_and_idle_histogram_match_a_walk_as_activity_time_and_purges_go() -> None:
    """Activity of every class (some of it old, some ahead of the clock), first_seen moving
    earlier, exits and purges, a reload merging records in, the clock jumping minutes to days:
    at every reading the kept aggregates equal the walk."""
    rng = random.Random(11)
    state = ActivityState(max_skew_ns=10 * S)
    now = T0
    sources = ["input", "prompt", "output", "agent", "connection", "heartbeat", "start", "exit"]
    for step in range(400):
        now += rng.choice([0, 1, 7, 59, 61, 299, 301, 900, 3600, 90000]) * S
        for _ in range(rng.randrange(1, 10)):
            sid = f"s{rng.randrange(60)}"
            t = now - rng.choice([0, 0, 3, 200, 400, 5000, 100_000]) * S + rng.randrange(S)
            ents = state.resolve(Identity(session_id=sid, agent_id="a", host_id="h"), now)
            action = rng.randrange(4)
            if action == 0:
                state.seen(ents, t)  # may move first_seen earlier
            else:
                state.activity(ents, rng.choice(sources), state.clamp(t + 5 * S, now))
        if step % 40 == 39:
            state.purge(now, 7200 * S)
        if step % 97 == 96:  # a reload into a fresh state, merged twice (idempotent)
            records = [e.record() for e in state.all_entities()]
            state = ActivityState(max_skew_ns=10 * S)
            state.load(records, now if step % 2 else None)
            state.load(records)
        state.age_recent(now, rng.choice([0, 1, 5, None]))  # a tick's slice, or none
        recent, counts, total = _walk(state, now)
        assert state.recent(now) == recent, step
        assert state.idle_histogram(now) == (counts, total), step


def test_purged_sessions_leave_the_aggregates() -> None:
    state = ActivityState()
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, "input", T0)
    state.activity(ents, "exit", T0)
    assert state.recent(T0)[ActivityClass.ENGAGEMENT] == 1
    assert state.purge(T0 + 100 * S, 10 * S)[0] == ents
    assert state.recent(T0 + 100 * S)[ActivityClass.ENGAGEMENT] == 0
    assert state.idle_histogram(T0 + 100 * S) == ([0] * (len(IDLE_BUCKETS) + 1), 0)


def test_idle_seconds_beyond_the_last_bound_merge_into_one_count() -> None:
    h = IdleHistogram()
    for i in range(1000):
        h.add(T0 + i * S)
    later = T0 + (86400 + 2000) * S
    assert h.histogram(later) == ([0] * 6 + [1000], sum(86400 + 2000 - i for i in range(1000)))
    assert len(h._counts) == 0  # merged: later readings do not walk them
    h.add(T0 + 5 * S, -1)  # one of them moves on
    h.add(later)
    counts, _ = h.histogram(later)
    assert counts == [1, 0, 0, 0, 0, 0, 999]


def test_each_class_stops_being_recent_at_its_own_time() -> None:
    state = ActivityState()
    ents = state.resolve(Identity(session_id="s"), T0)
    for offset, source in ((0, "input"), (100, "output"), (200, "connection")):
        state.activity(ents, source, T0 + offset * S)
    engaged, working, present = (
        ActivityClass.ENGAGEMENT,
        ActivityClass.WORK,
        ActivityClass.PRESENCE,
    )

    def recent(at: int) -> tuple[int, int, int]:
        counts = state.recent(T0 + at * S)
        return counts[engaged], counts[working], counts[present]

    assert recent(300) == (1, 1, 1)
    assert recent(301) == (0, 1, 1)
    assert recent(401) == (0, 0, 1)
    assert recent(501) == (0, 0, 0)
    state.activity(ents, "output", T0 + 600 * S)  # back: counted again, and checked again
    assert recent(600) == (0, 1, 0)
    assert recent(901) == (0, 0, 0)


def test_checks_run_a_budget_at_a_time_and_a_reading_runs_those_left() -> None:
    state = ActivityState()
    for i in range(10):
        state.activity(state.resolve(Identity(session_id=f"s{i}"), T0), "input", T0 + i * S)
    assert not state.age_recent(T0 + RECENT_S * S, 3)  # none due yet
    later = T0 + (RECENT_S + 20) * S  # all ten due, over ten seconds
    assert state.age_recent(later, 4)  # four run, six left
    assert state.age_recent(later, 4)
    assert state.recent(later)[ActivityClass.ENGAGEMENT] == 0  # the reading runs the last two
    assert not state.age_recent(later, 0)


def test_sessions_checked_in_the_same_second_share_its_int() -> None:
    """A session's ``recent_due`` is the bucket's own second, not an int of its own (32 bytes
    per session at 1M: issue 15)."""
    state = ActivityState()
    due = []
    for i in range(3):
        (s,) = [e for e in state.resolve(Identity(session_id=f"s{i}"), T0) if e.id == f"s{i}"]
        state.activity([s], "input", T0 + i * S // 10)  # the same second, different ns
        due.append(s.recent_due)
    assert due[0] == T0 // S + RECENT_S + 1
    assert due[1] is due[0] and due[2] is due[0]
