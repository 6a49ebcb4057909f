"""Idle policy semantics with a fake clock (no sleeps), and policy files refused with the key or
line at fault."""

from __future__ import annotations

from pathlib import Path

import pytest

from lastactive.collector._state import ActivityState, Entity, Identity, view
from lastactive.collector.policy import PolicyError, Rules, evaluate, load_policy, parse_policy
from lastactive.conventions import AgentStatus, AgentTurn, Source

S = 1_000_000_000
T0 = 1_800_000_000 * S


def session(**ident: str) -> tuple[ActivityState, list[Entity]]:
    state = ActivityState()
    return state, state.resolve(Identity(session_id="s", host_id="h", **ident), T0)


def at(ents: list[Entity], rules: Rules, now: int):
    return evaluate(view(ents[0], now), rules, now)


def test_idle_after_exactly_idle_after_without_counted_activity() -> None:
    state, ents = session()
    rules = Rules(idle_after=60, hibernate_after=600)
    state.activity(ents, "input", T0 + 10 * S)
    assert at(ents, rules, T0 + 69 * S).state == "active"
    e = at(ents, rules, T0 + 70 * S)
    assert (e.state, e.idle_since) == ("idle", T0 + 10 * S)
    assert e.hibernate_at == T0 + 610 * S and not e.hibernate
    assert at(ents, rules, T0 + 610 * S).hibernate
    assert "last counted activity 10 min ago" in at(ents, rules, T0 + 610 * S).reason


def test_presence_and_liveness_do_not_count_unless_the_policy_says_so() -> None:
    state, ents = session()
    state.activity(ents, "output", T0)
    state.activity(ents, "connection", T0 + 50 * S)  # a viewer connected (presence)
    state.activity(ents, "heartbeat", T0 + 55 * S)  # the wrapper is alive (liveness)
    assert at(ents, Rules(idle_after=60), T0 + 60 * S).state == "idle"
    with_presence = Rules(idle_after=60, count=frozenset({"work", "presence"}))
    assert at(ents, with_presence, T0 + 60 * S).state == "active"
    state.activity(ents, "prompt", T0 + 58 * S)  # untrusted (self-reported)
    assert at(ents, Rules(idle_after=60), T0 + 60 * S).state == "active"
    assert at(ents, Rules(idle_after=60, count_untrusted=False), T0 + 60 * S).state == "idle"


def test_leases_and_foreground_work_exempt_clients_only_when_asked() -> None:
    state, ents = session()
    state.activity(ents, "output", T0)
    rules = Rules(idle_after=60, hibernate_after=120)
    state.hold(ents, "lease", "L1", T0 + 3600 * S, T0 + S)
    e = at(ents, rules, T0 + 1000 * S)
    assert (e.state, e.hibernate_at, e.hibernate) == ("active", None, False)
    assert "held by lease L1" in e.reason
    assert at(ents, Rules(idle_after=60, exempt_leases=False), T0 + 1000 * S).state == "idle"
    state.hold(ents, "lease", "L1", T0 + 2 * S, T0 + 2 * S)  # released
    state.hold(ents, "foreground", "s", 0, T0 + 3 * S)
    assert at(ents, rules, T0 + 1000 * S).state == "active"
    state.hold(ents, "foreground", "s", T0 + 4 * S, T0 + 4 * S)
    state.hold(ents, "client", "tmux", 0, T0 + 5 * S)
    assert at(ents, rules, T0 + 1000 * S).hibernate  # a client alone does not exempt
    assert not at(ents, Rules(idle_after=60, hibernate_after=120, exempt_clients=True),
                  T0 + 1000 * S).hibernate  # fmt: skip


def test_max_age_hibernates_regardless_of_activity_and_holds() -> None:
    state, ents = session()
    rules = Rules(idle_after=60, hibernate_after=600, max_age=3600)
    state.hold(ents, "lease", "L", 0, T0)
    for minute in range(70):
        state.activity(ents, "input", T0 + minute * 60 * S)
    e = at(ents, rules, T0 + 3600 * S)
    assert e.hibernate and e.hibernate_at == T0 + 3600 * S and "max_age" in e.reason


def test_after_close_shortens_the_deadline_once_the_last_client_detached() -> None:
    state, ents = session()
    rules = Rules(idle_after=60, hibernate_after=1800, after_close=120)
    state.activity(ents, "input", T0)
    state.hold(ents, "client", "tmux", 0, T0)
    assert at(ents, rules, T0 + 60 * S).hibernate_at == T0 + 1800 * S
    state.hold(ents, "client", "tmux", T0 + 300 * S, T0 + 300 * S)  # detached
    e = at(ents, rules, T0 + 400 * S)
    assert e.hibernate_at == T0 + 420 * S and "after_close" in e.reason
    state.activity(ents, "input", T0 + 500 * S)  # used again after the close: normal bump
    assert at(ents, rules, T0 + 501 * S).hibernate_at == T0 + 2300 * S


def test_never_used_sessions_hibernate_early() -> None:
    state, ents = session()
    state.activity(ents, "start", T0 + 10 * S)  # lifecycle: started is not used
    rules = Rules(hibernate_after=1800, never_used=300)
    assert at(ents, rules, T0 + 20 * S).hibernate_at == T0 + 300 * S
    state.activity(ents, "input", T0 + 30 * S)
    assert at(ents, rules, T0 + 40 * S).hibernate_at == T0 + 1830 * S


def test_deadline_never_moves_backwards_and_never_passes_max_age() -> None:
    state, ents = session()
    rules = Rules(hibernate_after=600, max_age=5000)
    last = 0
    events = [(40, "input"), (10, "output"), (300, "input"), (200, "prompt"), (4900, "output")]
    for k, (sec, src) in enumerate(events):  # out of order, replays, old ones late
        state.activity(ents, src, T0 + sec * S)
        deadline = at(ents, rules, T0 + (k + 1) * S).hibernate_at
        assert deadline is not None
        assert deadline >= last
        assert deadline <= T0 + 5000 * S
        last = deadline


def test_runaway_and_stuck() -> None:
    state, ents = session(agent_id="codey")
    for i in range(30):
        state.io(ents, False, 2 * 1024 * 1024, T0 + i * S)
    assert at(ents, Rules(), T0 + 29 * S).runaway
    assert not at(ents, Rules(), T0 + 120 * S).runaway  # quiet afterwards: leaves runaway
    state.agent_event(ents, "active", "start", T0)  # type: ignore[arg-type]
    assert not at(ents, Rules(stuck_after=1800), T0 + 1799 * S).stuck
    assert at(ents, Rules(stuck_after=1800), T0 + 1800 * S).stuck


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[defaults]\nidle_after = 60\nidle_after = 70\n", "line 3"),
        ("[defaults]\nidle_after = -5\n", "defaults.idle_after"),
        ("[defaults]\nidel_after = 60\n", "defaults.idel_after"),
        ("[defaults]\ncount = ['engagement', 'vibes']\n", "defaults.count"),
        (
            "[[overrides]]\nmatch = { agent = 'x' }\nhibernate_after = 'soon'\n",
            "overrides[0].hibernate_after",
        ),
        ("[[overrides]]\nidle_after = 5\n", "overrides.0.match"),
        ("[[overrides]]\nmatch = { colour = 'red' }\n", "overrides.0.match.colour"),
    ],
)
def test_a_policy_file_with_an_error_is_refused_naming_the_line_or_key(
    tmp_path: Path, text: str, says: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert says in str(err.value)


def test_overrides_select_by_agent_host_and_prefix(tmp_path: Path) -> None:
    path = tmp_path / "policy.toml"
    path.write_text(
        "[defaults]\nidle_after = 60\n"
        "[[overrides]]\nmatch = { agent = 'codey' }\nidle_after = 300\n"
        "[[overrides]]\nmatch = { host = 'h', session_prefix = 'ci-' }\nidle_after = 5\n"
    )
    policy = load_policy(path)
    state = ActivityState()
    plain = state.resolve(Identity(session_id="a", host_id="h"), T0)[0]
    codey = state.resolve(Identity(session_id="b", host_id="h", agent_id="codey"), T0)[0]
    ci = state.resolve(Identity(session_id="ci-1", host_id="h"), T0)[0]
    assert policy.rules_for(view(plain, T0)).idle_after == 60
    assert policy.rules_for(view(codey, T0)).idle_after == 300
    assert policy.rules_for(view(ci, T0)).idle_after == 5
    assert policy.rules_for(view(codey, T0)).hibernate_after == 1800  # untouched default


def test_overrides_select_by_resource_attributes() -> None:
    policy = parse_policy(
        {
            "defaults": {"idle_after": 60},
            "overrides": [
                {"match": {"attributes": {"deployment.environment.name": "ci"}}, "idle_after": 5},
                {"match": {"attributes": {"team": "ml", "region": "eu"}}, "idle_after": 900},
            ],
        }
    )
    assert policy.attribute_keys == {"deployment.environment.name", "team", "region"}
    state = ActivityState()
    state.attribute_keys = policy.attribute_keys
    ci, ml, half = (state.resolve(Identity(session_id=s), T0) for s in ("ci", "ml", "half"))
    state.take_touched()
    state.describe(ci, (("deployment.environment.name", "ci"),))
    state.describe(ml, (("region", "eu"), ("team", "ml")))
    state.describe(half, (("team", "ml"),))  # every key of a match must match
    assert state.take_touched() == {ci[0], ml[0], half[0]}  # rules may change: re-evaluate
    state.describe(ci, (("deployment.environment.name", "ci"),))
    assert not state.take_touched()  # unchanged: no work
    assert [policy.rules_for(view(e[0], T0)).idle_after for e in (ci, ml, half)] == [5, 900, 60]
    state.describe(ci, (("deployment.environment.name", "prod"),))  # the latest value counts
    assert policy.rules_for(view(ci[0], T0)).idle_after == 60


def test_a_running_process_whose_liveness_lapsed_is_lost() -> None:
    """Issue 10 (7): a wrapper killed with SIGKILL reports no exit; its liveness lapses."""
    state, ents = session()
    state.activity(ents, "start", T0)
    for k in range(0, 30, 5):
        state.activity(ents, "process", T0 + k * S)  # the wrapper's liveness, every 5 s
    rules = Rules(lost_after=60)
    assert not at(ents, rules, T0 + 84 * S).lost
    e = at(ents, rules, T0 + 85 * S)
    assert e.lost and "process lost: no liveness for 60 s" in e.reason
    state.activity(ents, "exit", T0 + 90 * S)
    state.process(ents, None, 0)
    e = at(ents, rules, T0 + 95 * S)
    assert (e.state, e.lost, e.reason) == ("ended", False, "exited with code 0 5 s ago")


def test_a_session_without_liveness_reports_is_never_lost() -> None:
    state, ents = session()
    state.activity(ents, "start", T0)  # e.g. a Claude Code session: hooks, no wrapper
    assert not at(ents, Rules(lost_after=60), T0 + 3600 * S).lost


def test_never_used_counts_work_as_use() -> None:
    """Issue 10 (5): an agent working unattended (progress, no prompt) is in use."""
    rules = Rules(idle_after=60, hibernate_after=1800, never_used=600)
    state, ents = session()
    state.activity(ents, "start", T0)
    e = at(ents, rules, T0 + 600 * S)
    assert e.hibernate and "never used" in e.reason  # spawned, nothing since
    for k in range(1, 700):
        state.activity(ents, "agent", T0 + k * S)
    e = at(ents, rules, T0 + 700 * S)
    assert (e.state, e.hibernate, e.hibernate_at) == ("active", False, T0 + 2499 * S)


def agent_session() -> tuple[ActivityState, list[Entity]]:
    state = ActivityState()
    return state, state.resolve(Identity(session_id="s", agent_id="claude-code"), T0)


def test_an_agent_waiting_for_the_user_is_idle_never_stuck() -> None:
    """Issue 10 (4): after Stop the user has the turn: idle after idle_after, not stuck."""
    state, ents = agent_session()
    rules = Rules(idle_after=60, stuck_after=120)
    state.agent_event(ents, AgentStatus.ACTIVE, Source.START, T0, turn=AgentTurn.WAITING)
    state.activity(ents, "prompt", T0 + 10 * S)
    state.turn(ents, AgentTurn.WORKING, T0 + 10 * S)
    state.activity(ents, "agent", T0 + 20 * S)  # Stop: the answer is work ...
    state.turn(ents, AgentTurn.WAITING, T0 + 20 * S)  # ... then the user's turn
    e = at(ents, rules, T0 + 3600 * S)
    assert (e.state, e.stuck) == ("idle", False)
    assert e.stuck_reason.startswith("waiting for the user since")
    assert e.reason.startswith("waiting for the user since")
    state.turn(ents, AgentTurn.WORKING, T0 + 3600 * S)  # a new prompt, then silence
    assert not at(ents, rules, T0 + 3719 * S).stuck  # the timer starts at the prompt
    e = at(ents, rules, T0 + 3720 * S)
    assert e.stuck and e.stuck_reason == "no progress for 2 min >= stuck_after 2 min"


def test_the_latest_turn_wins_whatever_the_arrival_order() -> None:
    state, ents = agent_session()
    state.turn(ents, AgentTurn.WAITING, T0 + 20 * S)
    state.turn(ents, AgentTurn.WORKING, T0 + 10 * S)  # older, arriving late
    assert view(ents[0], T0 + 30 * S).turn == "waiting"
    state.agent_event(ents, AgentStatus.COMPLETED, Source.EXIT, T0 + 40 * S)
    assert view(ents[0], T0 + 50 * S).turn == "ended"


def test_a_tool_call_in_flight_holds_the_session_up_for_at_most_tool_call_max() -> None:
    """Issue 10 (10): a build inside an agent is work until it ends, bounded by
    tool_call_max so a lost PostToolUse cannot hold forever."""
    state, ents = agent_session()
    rules = Rules(idle_after=4, stuck_after=6, hibernate_after=8, tool_call_max=600)
    state.agent_event(ents, AgentStatus.ACTIVE, Source.AGENT, T0)
    state.hold(ents, "tool", "Bash/toolu_1", 0, T0)
    e = at(ents, rules, T0 + 300 * S)
    assert (e.state, e.stuck, e.hibernate_at, e.hibernate) == ("active", False, None, False)
    assert "held by tool Bash/toolu_1" in e.reason
    assert "tool call Bash/toolu_1 in flight" in e.stuck_reason
    assert e.next_change == T0 + 600 * S  # when the hold stops counting
    e = at(ents, rules, T0 + 600 * S)  # the end was lost: the bound lapses
    assert (e.state, e.stuck, e.hibernate) == ("idle", True, True)
    assert at(ents, Rules(idle_after=4, exempt_tools=False), T0 + 300 * S).state == "idle"


def test_a_tool_call_ends_with_its_post_event_or_the_turn() -> None:
    state, ents = agent_session()
    rules = Rules(idle_after=4)
    state.hold(ents, "tool", "Bash/a", 0, T0)
    state.hold(ents, "tool", "Read/b", 0, T0)
    state.hold(ents, "tool", "Bash/a", T0 + S, T0 + S)  # PostToolUse: released
    assert [h.id for h in at(ents, rules, T0 + 2 * S).held_by] == ["Read/b"]
    state.turn(ents, AgentTurn.WAITING, T0 + 3 * S)  # Stop: nothing is in flight any more
    assert at(ents, rules, T0 + 10 * S).held_by == ()


def test_a_hold_says_what_its_holder_does() -> None:
    state, ents = session()
    state.hold(ents, "foreground", "s", T0 + 60 * S, T0, "make (CPU 94 %)")
    e = at(ents, Rules(), T0 + S)
    assert e.reason.endswith("held by foreground make (CPU 94 %)")
    assert [h.reason for h in e.held_by] == ["make (CPU 94 %)"]
    state.hold(ents, "foreground", "s", T0 + 2 * S, T0 + 2 * S, "vim waiting for the terminal")
    assert at(ents, Rules(), T0 + 3 * S).held_by == ()  # released
