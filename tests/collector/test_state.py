"""The pure core with a fake clock: max-registers, counter streams, clamping, rates, sorting."""

from __future__ import annotations

import random
from dataclasses import astuple

import pytest

from lastactive.collector._ages import RECENT_S
from lastactive.collector._record import INT64_MAX, EntityRecord
from lastactive.collector._state import (
    _GAUGES_MAX,
    _NO_DETAILS,
    _NO_RATE,
    _SHARED_NAMES,
    _SHARED_NAMES_MAX,
    RATE_WINDOW_NS,
    ActivityState,
    Details,
    Entity,
    Identity,
    Kind,
    _RateWindow,
    sort_key,
    view,
)
from lastactive.conventions import AgentStatus, HoldKind, Source

S = 1_000_000_000
T0 = 1_800_000_000 * S


def make(started_at: int = T0) -> tuple[ActivityState, list]:
    state = ActivityState(max_skew_ns=10 * S, started_at=started_at)
    ents = state.resolve(Identity(session_id="s", host_id="h", agent_id="a"), T0)
    return state, ents


def test_identity_makes_session_agent_and_host() -> None:
    state, ents = make()
    assert [e.kind for e in ents] == [Kind.SESSION, Kind.AGENT, Kind.HOST]
    assert ents[0].host_id == "h" and ents[0].agent_id == "a"
    state.activity(ents, "input", T0 + S)
    assert state.get(Kind.HOST, "h", T0 + S).last_active == T0 + S  # type: ignore[union-attr]


def test_timestamps_are_max_registers() -> None:
    state, ents = make()
    state.activity(ents, "output", T0 + 5 * S)
    state.activity(ents, "output", T0 + 2 * S)  # late, older: ignored
    state.seen(ents, T0 - 3 * S)  # older telemetry moves first_seen back, not last_seen
    v = view(ents[0], T0 + 10 * S)
    assert v.sources["output"] == T0 + 5 * S
    assert v.last_seen == T0 + 5 * S
    assert v.first_seen == T0 - 3 * S


def test_clamp_future_and_unset() -> None:
    state, _ = make()
    now = T0 + 100 * S
    assert state.clamp(now + 5 * S, now) == now + 5 * S  # within skew
    assert state.clamp(now + 11 * S, now) == now  # beyond skew
    assert state.clamp(0, now) == now


def test_cumulative_counter_semantics() -> None:
    state, _ = make(started_at=T0)
    key = ("stream",)
    # (how much it rose, the time of the stream's previous point: 0 for none), None: stale.
    assert state.counter(key, T0 - S, T0, 100, True) == (0, 0)  # began before us: baseline
    assert state.counter(key, T0 - S, T0 + S, 100, True) == (0, T0)  # unchanged: not activity
    assert state.counter(key, T0 - S, T0 + 2 * S, 130, True) == (30, T0 + S)
    assert state.counter(key, T0 - S, T0 + S, 150, True) is None  # stale
    assert state.counter(key, T0 - S, T0 + 2 * S, 130, True) is None  # replay
    assert state.counter(key, T0 - S, T0 + 3 * S, 5, True) == (5, T0 + 2 * S)  # lower: reset
    assert state.counter(key, T0 + 3 * S, T0 + 4 * S, 7, True) == (7, T0 + 3 * S)  # new start
    assert state.counter(("new",), T0 + S, T0 + 2 * S, 9, True) == (9, 0)  # began while watched
    assert state.counter(("delta",), 0, T0, 4, False) == (4, 0)
    assert state.counter(("delta",), 0, T0, 0, False) == (0, 0)


def test_rates_over_the_rolling_window() -> None:
    state, ents = make()
    for i in range(10):  # 300 bytes every 5 s
        state.io(ents, False, 300, T0 + i * 5 * S)
    now = T0 + 45 * S
    v = view(ents[0], now)
    assert v.output_bytes == 3000
    # (now-30 s, now] holds the points at 20, 25 ... 45 s minus the one at exactly now-30 s.
    assert v.output_bytes_per_second == 300 * 6 / (RATE_WINDOW_NS / S)
    assert view(ents[0], now + 60 * S).output_bytes_per_second == 0


def test_idle_and_why() -> None:
    state, ents = make()
    state.activity(ents, "heartbeat", T0 + 50 * S)  # liveness: does not end idleness
    state.activity(ents, "connection", T0 + 40 * S)  # presence: not by default
    state.activity(ents, "output", T0 + 10 * S)
    v = view(ents[0], T0 + 60 * S)
    assert v.last_source == "output"
    assert v.idle_seconds == 50
    assert v.last_active is None  # no engagement yet
    fresh = state.resolve(Identity(session_id="fresh"), T0)[0]
    assert view(fresh, T0 + 7 * S).idle_seconds == 7


def test_process_status_derives_from_start_and_exit() -> None:
    state, ents = make()
    state.activity(ents, "start", T0)
    state.process(ents, 42, None)
    assert view(ents[0], T0).process_status == "running"
    state.activity(ents, "exit", T0 + S)
    state.process(ents, 42, 3)
    v = view(ents[0], T0 + S)
    assert (v.process_status, v.exit_code, v.pid) == ("exited", 3, 42)
    state.activity(ents, "start", T0 + 2 * S)  # restarted under the same session
    assert view(ents[0], T0 + 2 * S).process_status == "running"


def test_sort_last_active_then_last_seen_then_first_seen() -> None:
    state = ActivityState()
    a, b, c, d = (state.resolve(Identity(session_id=x), T0)[0] for x in "abcd")
    state.activity([a], "prompt", T0 + 1 * S)
    state.activity([b], "prompt", T0 + 3 * S)
    state.seen([c], T0 + 9 * S)  # no prompt, recent heartbeat
    order = [v.id for v in sorted((view(e, T0 + 10 * S) for e in (a, b, c, d)), key=sort_key)]
    assert order == ["b", "a", "c", "d"]
    assert [v.id for v in state.sessions(T0 + 10 * S)] == order


def test_dirty_tracking_is_per_entity_and_load_merges() -> None:
    state, ents = make()
    for i in range(1000):
        state.activity(ents, "output", T0 + i)
    records = state.take_dirty()
    assert len(records) == 3  # one row per changed entity, however many events
    assert state.take_dirty() == []
    fresh = ActivityState()
    fresh.load(records)
    fresh.load(records)  # idempotent
    v = fresh.get(Kind.SESSION, "s", T0 + S)
    assert v is not None and v.sources["output"] == T0 + 999


def test_holds_latest_report_wins_and_exit_releases() -> None:
    state, ents = make()
    state.hold(ents, "lease", "L1", T0 + 60 * S, T0 + S)
    state.hold(ents, "client", "pts/3", 0, T0 + S)  # open-ended
    assert {h.id for h in view(ents[0], T0 + 30 * S).held_by} == {"L1", "pts/3"}
    assert [h.id for h in view(ents[2], T0 + 30 * S).held_by] == ["L1", "pts/3"]  # the host
    state.hold(ents, "lease", "L1", T0 + 90 * S, T0 - S)  # an older renewal, arriving late
    expired = view(ents[0], T0 + 61 * S).held_by  # L1 expired
    assert expired == [("client", "pts/3", 0, T0 + S, None)]
    state.hold(ents, "client", "pts/3", T0 + 70 * S, T0 + 70 * S)  # released (detach)
    assert view(ents[0], T0 + 71 * S).held_by == []
    state.hold(ents, "lease", "L2", 0, T0 + 80 * S)
    state.activity(ents, "exit", T0 + 90 * S)
    state.release_holds(ents, T0 + 90 * S)
    assert view(ents[0], T0 + 91 * S).held_by == []
    assert view(ents[2], T0 + 91 * S).held_by == []


def test_agent_lifecycle_status_task_and_result() -> None:
    state, ents = make()
    state.agent_event(ents, AgentStatus.ACTIVE, Source.START, T0, task="fix bugs")
    v = view(ents[0], T0)
    assert (v.status, v.task, v.last_source) == ("active", "fix bugs", "start")
    state.agent_event(ents, AgentStatus.ACTIVE, Source.AGENT, T0 + S, task="half done")
    state.agent_event(ents, AgentStatus.COMPLETED, Source.EXIT, T0 + 2 * S, result="done!")
    state.agent_event(ents, AgentStatus.ACTIVE, Source.AGENT, T0 + S // 2, task="late")  # older
    v = view(ents[0], T0 + 3 * S)
    assert (v.status, v.task, v.result) == ("completed", "half done", "done!")


def test_status_from_process_exit_code() -> None:
    state, ents = make()
    state.activity(ents, "start", T0)
    assert view(ents[0], T0).status == "active"
    state.activity(ents, "exit", T0 + S)
    state.process(ents, 7, 2)
    assert view(ents[0], T0 + S).status == "error"


def test_purge_forgets_ended_sessions_after_retention_never_active_ones() -> None:
    state = ActivityState()
    done = state.resolve(Identity(session_id="done", host_id="h"), T0)
    busy = state.resolve(Identity(session_id="busy", host_id="h"), T0)
    state.agent_event(done, AgentStatus.COMPLETED, Source.EXIT, T0 + S)
    state.activity(busy, "output", T0 + S)  # active, and quiet for a long time after
    day = 24 * 3600 * S
    assert state.purge(T0 + S + day - 1, day)[0] == []
    assert [(e.kind, e.id) for e in state.purge(T0 + S + day, day)[0]] == [("session", "done")]
    assert state.get(Kind.SESSION, "done", T0) is None
    assert state.get(Kind.SESSION, "busy", T0 + 10 * day) is not None


def test_purge_keeps_a_session_that_started_again_and_purges_it_after_its_new_end() -> None:
    state = ActivityState()
    ents = state.resolve(Identity(session_id="s"), T0)
    state.activity(ents, Source.START, T0)
    state.activity(ents, Source.EXIT, T0 + S)
    state.process(ents, 7, 0)
    state.activity(ents, Source.START, T0 + 2 * S)  # running again: not a candidate any more
    day = 24 * 3600 * S
    assert state.purge(T0 + 10 * day, day)[0] == []
    state.activity(ents, Source.EXIT, T0 + 11 * day)
    assert state.purge(T0 + 12 * day - 1, day)[0] == []
    assert [e.id for e in state.purge(T0 + 12 * day, day)[0]] == ["s"]


def test_purge_finds_ended_sessions_loaded_from_the_store() -> None:
    before = ActivityState()
    ents = before.resolve(Identity(session_id="s", host_id="h"), T0)
    before.agent_event(ents, AgentStatus.ERROR, Source.EXIT, T0)
    state = ActivityState()
    state.load(before.take_dirty())
    assert [e.id for e in state.purge(T0 + 2 * S, S)[0]] == ["s"]
    assert [(e.kind, e.id) for e in state.all_entities()] == [(Kind.HOST, "h")]


def test_streams_silent_for_a_retention_period_are_dropped_at_the_second_rotation() -> None:
    state = ActivityState(started_at=T0)
    day = 24 * 3600 * S
    for quiet in range(3):
        state.counter(("quiet", quiet), T0 - S, T0, 100, True)
    state.counter(("busy",), T0 - S, T0, 100, True)
    assert state.purge(T0, day)[1] is False  # the first purge sets the rotation's time
    assert state.purge(T0 + day, day)[1] is True
    assert state.counter(("busy",), T0 - S, T0 + day, 130, True) == (30, T0)  # baseline kept
    assert state.purge(T0 + 2 * day, day)[1] is True
    assert state.release(1) is True  # freed a slice at a time
    while state.release(1):
        pass
    assert state.counter(("busy",), T0 - S, T0 + 2 * day, 131, True) == (1, T0 + day)
    # Dropped (silent for two rotations): a new stream (no previous point), a baseline again.
    assert state.counter(("quiet", 0), T0 - S, T0 + 2 * day, 150, True) == (0, 0)


def test_last_time_gauges_compare_raw_values_per_reporter_on_the_entity() -> None:
    state, ents = make()
    a, b = ("svc", "a", "h", None), ("svc", "b", "h", None)
    raw = (T0 + 5 * S) / S
    state.last_time(ents, a, raw, Source.INPUT, T0 + 6 * S, 0, T0 + 6 * S)
    assert ents[0].source_time(Source.INPUT) == T0 + 5 * S
    # The same raw value again, though the reporter's clock now looks an hour behind: no
    # new activity (the raw values are compared, not the corrected times).
    state.last_time(ents, a, raw, Source.INPUT, T0 + 7 * S, 3600 * S, T0 + 7 * S)
    assert ents[0].source_time(Source.INPUT) == T0 + 5 * S
    assert ents[0].last_seen == T0 + 7 * S  # but it is liveness
    # Another reporter's lower raw value is its first: activity as its clock says.
    state.last_time(ents, b, raw - 1, Source.INPUT, T0 + 7 * S, 3600 * S, T0 + 7 * S)
    assert ents[0].source_time(Source.INPUT) == T0 + 7 * S  # clamped to now
    assert ents[0].gauges == {Source.INPUT: raw, (b, Source.INPUT): raw - 1}
    assert ents[0].gauge_reporter == a and ents[1].gauges is None  # on the session only
    assert len(state._streams) == 0  # no stream in the fleet-wide map


def test_an_entity_keeps_a_bounded_number_of_last_time_gauges() -> None:
    e = make()[1][0]
    for i in range(_GAUGES_MAX + 5):
        assert e.gauge_rose(("svc", str(i), None, None), "input", 1.0)
    assert e.gauges is not None and len(e.gauges) == _GAUGES_MAX
    assert e.gauge_rose(("svc", "0", None, None), "input", 1.0)  # the first, forgotten
    assert not e.gauge_rose(("svc", str(_GAUGES_MAX + 4), None, None), "input", 1.0)


def test_trusted_only_ignores_self_reported_sources() -> None:
    state, ents = make()
    state.activity(ents, "input", T0 + S)  # observed by the wrapper: trusted
    state.activity(ents, "prompt", T0 + 5 * S)  # reported by the agent's hook: untrusted
    assert view(ents[0], T0 + 10 * S).last_source == "prompt"
    trusted = view(ents[0], T0 + 10 * S, trusted_only=True)
    assert (trusted.last_source, trusted.idle_seconds) == ("input", 9)


def test_the_host_index_follows_new_moved_loaded_and_purged_sessions() -> None:
    state = ActivityState()
    a = state.resolve(Identity(session_id="a", host_id="h1"), T0)
    state.resolve(Identity(session_id="b", host_id="h1"), T0)
    state.resolve(Identity(session_id="b", host_id="h2"), T0)  # moved
    assert [e.id for e in state.on_host("h1")] == ["a"]
    assert [v.id for v in state.sessions(T0, host_id="h2")] == ["b"]
    state.activity(a, Source.EXIT, T0)
    state.purge(T0 + 2 * S, S)
    assert state.on_host("h1") == []
    loaded = ActivityState()
    loaded.load(state.take_dirty())
    assert [e.id for e in loaded.on_host("h2")] == ["b"]


def test_sessions_without_io_share_one_empty_rate_window_until_they_move_bytes() -> None:
    state = ActivityState()
    quiet = state.resolve(Identity(session_id="quiet"), T0)[0]
    busy = state.resolve(Identity(session_id="busy"), T0)[0]
    assert quiet.rate_out is busy.rate_out  # one shared window, no deque per session
    state.io([busy], False, 3000, T0)
    state.io([busy], True, 30, T0)
    assert view(busy, T0).output_bytes_per_second == 100.0
    assert view(busy, T0).input_bytes_per_second == 1.0
    assert view(quiet, T0).output_bytes_per_second == 0.0  # the shared one stayed empty
    assert not quiet.rate_out and not quiet.rate_in


def test_producers_give_each_rate_and_drop_those_whose_window_lapsed() -> None:
    state = ActivityState()
    a, b, late = (state.resolve(Identity(session_id=s), T0)[0] for s in "abl")
    state.io([a], False, 3000, T0)
    state.io([b], False, 300, T0 - 40 * S)  # out of the window at T0
    state.io([late], False, 30, T0 + 2 * S)  # after T0: a slice read after it came
    assert state.producers(T0, [a, b]) == [(100.0, a)]  # of those given only
    assert set(state.producing) == {a, late}
    assert state.producers(T0) == [(100.0, a)]
    assert set(state.producing) == {a, late}  # kept: output after T0, not lapsed
    assert state.producers(T0 + 2 * S) == [(100.0, a), (1.0, late)]
    assert state.producers(T0 + 40 * S) == [] and not state.producing


def test_a_quiet_sessions_rate_windows_are_given_back_at_its_recent_check() -> None:
    state = ActivityState()
    quiet, busy = (state.resolve(Identity(session_id=s, host_id="h"), T0)[0] for s in "qb")
    host = state.entities[Kind.HOST]["h"]
    for e in (quiet, busy):
        state.io([e, host], True, 30, T0)
        state.io([e, host], False, 3000, T0)
        state.activity([e], "output", T0)
    for i in range(1, 31):  # busy keeps writing, quiet's window lapses 30 s after T0
        state.io([busy], False, 300, T0 + i * 10 * S)
        state.activity([busy], "output", T0 + i * 10 * S)
    now = T0 + (RECENT_S + 2) * S  # quiet's first recent check is due
    assert quiet.rate_out and quiet.rate_in  # lapsed, but not given back before the check
    assert not state.age_recent(now)
    assert quiet.rate_out is quiet.rate_in is _NO_RATE
    assert view(quiet, now).output_bytes_per_second == 0.0
    assert view(busy, now).output_bytes_per_second == 300 * 3 / 30  # 280, 290, 300 s
    assert busy.rate_out is not _NO_RATE and busy.rate_in is _NO_RATE  # in: lapsed
    assert host.rate_out is not _NO_RATE  # a host has no recent checks: one window a host
    state.io([quiet], False, 60, now)  # moving bytes again: a window of its own again
    assert view(quiet, now).output_bytes_per_second == 2.0 and quiet.rate_out is not _NO_RATE


def test_a_rate_window_saturates_rather_than_overflows() -> None:
    state = ActivityState()
    e = state.resolve(Identity(session_id="s"), T0)[0]
    for delta in (2**70, 2**63, 5):  # one second's bucket: saturated, then held there
        state.io([e], False, delta, T0)
    state.io([e], False, 2**64, T0 + S)  # a new bucket: saturated on its own
    assert view(e, T0 + S).output_bytes_per_second == 2 * INT64_MAX / 30
    assert view(e, T0 + 30 * S).output_bytes_per_second == INT64_MAX / 30  # the first left


def test_a_hosts_rate_window_stays_one_bucket_a_second_and_exact() -> None:
    # A host's window takes the bytes of every session on it: 1000 sessions each reporting
    # every 5 s would be 6000 entries in 30 s, summed at every evaluation (issue 15).
    state = ActivityState()
    rng = random.Random(5)
    sessions = [state.resolve(Identity(session_id=f"s{i}", host_id="h"), T0) for i in range(50)]
    host = sessions[0][1]
    sent: list[tuple[int, int]] = []
    t = T0
    for _ in range(3000):
        t += rng.randrange(0, S // 10)
        delta = rng.randrange(1, 5000)
        state.io(rng.choice(sessions), False, delta, t)
        sent.append((t // S, delta))
        now = t + rng.randrange(-S, 40 * S)
        second, newest = now // S, t // S
        window = [d for s, d in sent if second - 30 < s <= second and s > newest - 30]
        assert view(host, now).output_bytes_per_second == sum(window) / 30
    assert len(host.rate_out._items) // 2 <= RATE_WINDOW_NS // S + 1  # (second, bytes) each


def test_sources_stay_sorted_max_registers_and_share_their_names() -> None:
    state = ActivityState()
    a = state.resolve(Identity(session_id="a"), T0)[0]
    b = state.resolve(Identity(session_id="b"), T0)[0]
    state.activity([a], Source.PROCESS, T0 + S)
    state.activity([a], "input", T0 + 2 * S)
    state.activity([b], "input", T0 + 3 * S)
    state.activity([b], Source.PROCESS, T0 + 4 * S)
    state.activity([b], Source.PROCESS, T0 + S)  # older: kept the later one
    assert a.source_names == b.source_names == ("input", "process")
    assert a.source_names is b.source_names  # one tuple for every entity with this set
    assert all(type(name) is str for name in b.source_names)  # not Source members
    assert b.source_times == (T0 + 3 * S, T0 + 4 * S)
    assert b.source_time("input") == T0 + 3 * S and b.source_time("exit") is None
    assert b.record().sources == (("input", T0 + 3 * S), ("process", T0 + 4 * S))
    c = state.resolve(Identity(session_id="c"), T0)[0]
    c.restore(b.record())
    assert c.source_names is b.source_names and c.source_times == b.source_times


def test_ever_new_sets_of_source_names_do_not_grow_the_shared_sets_past_their_cap() -> None:
    # Ingest takes only the conventions' sources; a store's rows may hold any.
    state = ActivityState()
    [e] = state.resolve(Identity(session_id="x"), T0)[:1]
    for i in range(5000):
        state.activity([e], f"made-up-{i:04}", T0 + i)
    assert len(e.source_names) == 5000 and e.source_time("made-up-4999") == T0 + 4999
    assert list(e.source_names) == sorted(e.source_names)
    assert len(_SHARED_NAMES) <= _SHARED_NAMES_MAX


def test_details_are_shared_and_empty_until_one_is_reported() -> None:
    state = ActivityState()
    plain = state.resolve(Identity(session_id="plain", host_id="h"), T0)
    agent = state.resolve(Identity(session_id="agent", agent_id="codey"), T0)
    state.activity(plain, "input", T0)
    state.agent_event(agent, AgentStatus.ACTIVE, Source.START, T0, task="fix it")
    assert plain[0].details is plain[1].details is _NO_DETAILS  # nothing reported: shared
    assert agent[0].details is not _NO_DETAILS and agent[0].details.task == "fix it"
    assert astuple(_NO_DETAILS) == astuple(Details())  # the event did not write to it
    with pytest.raises(AttributeError, match="read-only"):
        _NO_DETAILS.status = "completed"
    # A record that tells nothing gives no details of its own; hold reasons (not persisted)
    # stay through a load.
    again = state.resolve(Identity(session_id="again"), T0)[0]
    again.restore(plain[0].record())
    assert again.details is _NO_DETAILS
    state.hold([agent[0]], HoldKind.TOOL, "t1", 0, T0, reason="running tests")
    agent[0].restore(agent[0].record())
    assert agent[0].details.hold_reasons == {"tool:t1": "running tests"}
    assert (agent[0].details.task, agent[0].details.status) == ("fix it", "active")


def test_a_view_shows_each_field_under_its_name() -> None:
    # view() builds its named tuple by position (issue 15): every field differs here, so a
    # value in the wrong place shows.
    r = EntityRecord(
        kind="session",
        id="s",
        host_id="h",
        agent_id="a",
        service_name="svc",
        first_seen=T0,
        last_seen=T0 + 9 * S,
        sources=(("exit", T0 + 8 * S), ("input", T0 + 3 * S), ("start", T0 + S)),
        input_bytes=11,
        output_bytes=22,
        pid=33,
        exit_code=44,
        holds=(("client:c1", T0 + 2 * S, T0 + 4 * S),),
        task="t",
        result="r",
        attributes=(("team", "x"),),
        turn="working",
        turn_time=T0 + 5 * S,
    )
    e = Entity(Kind.SESSION, "s", T0, T0 + 9 * S)
    e.restore(r)
    e.rate_in, e.rate_out = _RateWindow(), _RateWindow()
    e.rate_in.add(T0 + 9 * S, 30)
    e.rate_out.add(T0 + 9 * S, 60)
    e.clock_offset = 7
    assert view(e, T0 + 10 * S)._asdict() == {
        "kind": "session",
        "id": "s",
        "host_id": "h",
        "agent_id": "a",
        "service_name": "svc",
        "first_seen": T0,
        "last_seen": T0 + 9 * S,
        "last_active": T0 + 3 * S,  # input: engagement
        "last_activity": T0 + 8 * S,  # the exit
        "last_source": "exit",
        "idle_seconds": 2.0,
        "sources": {"exit": T0 + 8 * S, "input": T0 + 3 * S, "start": T0 + S},
        "input_bytes": 11,
        "output_bytes": 22,
        "input_bytes_per_second": 1.0,  # 30 bytes over the 30 s window
        "output_bytes_per_second": 2.0,
        "process_status": "exited",
        "pid": 33,
        "exit_code": 44,
        "status": "error",  # exited with a code other than 0, no agent status told
        "turn": "ended",
        "turn_since": T0 + 5 * S,
        "task": "t",
        "result": "r",
        "held_by": [],  # the client detached at +4 s
        "last_client_closed": T0 + 4 * S,
        "attributes": {"team": "x"},
        "clock_offset": 7,
    }


@pytest.mark.parametrize(("read_after_s", "rate"), [(0, 480 * 2**20 / 30), (31, 0.0)])
def test_bytes_a_replica_follows_count_when_the_row_saw_them_not_when_it_is_read(
    read_after_s: int, rate: float
) -> None:
    """A replica following the stored rows (issue 13) puts a row's byte rise into the rate
    window at the row's last_seen: read at once it makes the rate; read 31 s later (a stalled
    follow) the bytes are older than the 30 s window and make none (at the read's time they
    would make a runaway rate of bytes that stopped long ago)."""
    state = ActivityState()
    state.additive_io = True
    first = EntityRecord(kind="session", id="s", first_seen=T0, last_seen=T0)
    state.load([first], T0, follow=True)
    moved = EntityRecord(
        kind="session", id="s", first_seen=T0, last_seen=T0 + 12 * S, output_bytes=480 * 2**20
    )
    now = T0 + (12 + read_after_s) * S
    (e,) = state.load([moved], now, follow=True)
    assert e.output_bytes == 480 * 2**20
    assert e.rate_out.per_second(now) == rate
