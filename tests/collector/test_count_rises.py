"""Counting a cumulative byte stream whose points reach two replicas (issue 13): each
replica's :class:`ActivityState` keeps the stream's points (``rise_point``), a commit counts
them against the stream's stored last points (:func:`count_rises`), a failed commit puts them
back (``restore_io_counted``); 2,000 random histories add up to what one process counts. The
same on a real PostgreSQL, with concurrent commits: ``tests/collector/test_replicas.py``."""

from __future__ import annotations

import random

from lastactive.collector._record import Heads, StreamRecord, StreamRise, count_rises
from lastactive.collector._state import ActivityState, Identity

S = 1_000_000_000
T0 = 1_800_000_000 * S
KEY = ("a", "stream")


def _history(seed: int) -> tuple[int, int]:
    """Bytes counted by two replicas and by one process, for 8 rounds of a stream's points:
    two per round, arriving in either order at either replica (some twice), a reset now and
    then (never in two rounds running), each replica's commit failing a fifth of the rounds
    (never two running)."""
    rng = random.Random(seed)
    one = ActivityState(started_at=T0 - 60 * S)
    one_session = one.resolve(Identity(session_id="s"), T0)
    replicas = [ActivityState(started_at=T0 - 60 * S) for _ in range(2)]
    sessions = []
    for r in replicas:
        r.additive_io = True
        sessions.append(r.resolve(Identity(session_id="s"), T0))
    stored: Heads = {}
    added = 0
    value, start, failed = 0, T0, [False, False]
    for step in range(1, 9):
        now = T0 + step * S
        if rng.random() < 0.15 and start < now - 2 * S:
            start, value = now - S // 2, 0
        points = []
        for t in (now, now + S // 4):
            value += rng.choice((0, 0, 1, 7, 1500))
            points.append((start, t, value))
        rng.shuffle(points)
        for point in points:
            for which in {rng.randrange(2) for _ in range(1 + (rng.random() < 0.1))}:
                for state, ents, counted in (
                    (one, one_session, False),
                    (replicas[which], sessions[which], True),
                ):
                    counted_point = state.counter(KEY, *point, cumulative=True)
                    if counted_point is None:
                        continue
                    rose = counted_point[0]
                    if counted:
                        state.rise_point(KEY, ents, True, int(rose))
                    if rose:
                        state.io(ents, True, int(rose), point[1], cumulative=True)
        failed = [rng.random() < 0.2 and not f for f in failed]
        for which in rng.sample((0, 1), 2):
            counted = replicas[which].take_io_counted()
            if failed[which]:
                replicas[which].restore_io_counted(counted)
            else:
                added += sum(i for _, _, i, _ in count_rises(counted.streams, stored))
    for r in replicas:
        added += sum(i for _, _, i, _ in count_rises(r.take_io_counted().streams, stored))
    return added, one_session[0].input_bytes


def test_a_stream_between_two_replicas_counts_what_one_process_counts() -> None:
    histories = [_history(seed) for seed in range(2000)]
    assert [seed for seed, (two, one) in enumerate(histories) if two != one] == []
    assert sum(one for _, one in histories) > 2000 * 1500  # bytes did move


def test_a_replay_and_an_older_point_add_nothing() -> None:
    stored: Heads = {}
    state = ActivityState(started_at=T0 - 60 * S)
    state.additive_io = True
    ents = state.resolve(Identity(session_id="s"), T0)
    for t, v in ((T0 + S, 100), (T0 + 2 * S, 150)):
        counted_point = state.counter(KEY, T0, t, v, cumulative=True)
        assert counted_point is not None
        state.rise_point(KEY, ents, True, int(counted_point[0]))
    assert count_rises(state.take_io_counted().streams, stored) == [("session", "s", 150, 0)]
    replay = ActivityState(started_at=T0 - 60 * S)  # another replica gets the first point again
    replay.additive_io = True
    # It counts it locally (it never saw the stream)...
    assert replay.counter(KEY, T0, T0 + S, 100, cumulative=True) == (100, 0)
    replay.rise_point(KEY, replay.resolve(Identity(session_id="s"), T0), True, 100)
    assert count_rises(replay.take_io_counted().streams, stored) == []  # ...the store does not


def _rise(*runs: tuple[int, int, float, int]) -> StreamRise:
    return StreamRise("k", True, (("session", "s"),), runs)


def test_runs_a_reset_apart_reaching_the_store_in_either_order() -> None:
    """Replica A's commit fails while it holds the end of a run; replica B commits points of a
    later run first. A's run then adds what one process would have counted."""
    s0, s1, s2 = T0, T0 + 2 * S, T0 + 3 * S
    # The store knew only B's run: A's earlier run adds what A counted from it.
    stored: Heads = {}
    assert count_rises([_rise((s1, s1 + S, 1500, 1500))], stored) == [("session", "s", 1500, 0)]
    assert count_rises([_rise((s0, s0 + S, 8, 8))], stored) == [("session", "s", 8, 0)]
    assert stored["k"][1] == StreamRecord("k", s0, s0 + S, 8)  # the run before, as stored
    # The store knew the run before: B's reset adds its value, A's run in between its value
    # (a reset nobody stored), A's later point of B's run its rise.
    stored = {"k": (StreamRecord("k", s0, s0 + S, 1508), None)}
    assert count_rises([_rise((s2, s2 + S, 7, 7))], stored) == [("session", "s", 7, 0)]
    a = _rise((s1, s1 + S, 1500, 1500), (s2, s2 + S + S // 4, 1507, 1507))
    assert count_rises([a], stored) == [("session", "s", 3000, 0)]
    assert stored["k"] == (
        StreamRecord("k", s2, s2 + S + S // 4, 1507),
        StreamRecord("k", s1, s1 + S, 1500),
    )
