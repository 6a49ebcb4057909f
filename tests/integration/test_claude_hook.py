"""``lastactive hook claude`` fed real hook payloads (fixtures shaped like Claude Code's
documented hook input), as a real process, against a real collector; and seed 002's stories."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.helpers import Collector, CollectorClient

FIXTURES = Path(__file__).parents[1] / "fixtures" / "claude_hooks"
HOOK = [sys.executable, "-m", "lastactive", "hook", "claude"]
HOOK_BOUND_S = 2.0
"""The hook must return in well under a second; this bound leaves room for a loaded CI."""


def fire(url: str, event: str, session_id: str, env: dict[str, str]) -> None:
    payload = (FIXTURES / f"{event}.json").read_text().replace("SESSION", session_id)
    done = subprocess.run(
        [*HOOK, "--url", url], input=payload.encode(), capture_output=True, env=env,
        timeout=HOOK_BOUND_S, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout == b""  # Claude Code reads a hook's stdout: we print nothing


def test_prompt_moves_last_active_and_stop_does_not(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    for event in ("SessionStart", "UserPromptSubmit"):
        fire(collector.http, event, "cc-1", lastactive_env)
    s = collector.session("cc-1")
    assert s is not None
    assert s["last_active"] is not None and s["last_source"] == "prompt"
    assert (s["status"], s["agent_id"], s["service_name"]) == (
        "active",
        "claude-code",
        "claude-code",
    )
    prompted = s["last_active"]
    # Hook events are self-reported by the agent: a trusted-only view does not count them.
    status, trusted = collector.get("/v1/sessions/cc-1?trusted_only=true")
    assert status == 200 and trusted["last_active"] is None and trusted["last_source"] is None

    for event in ("PreToolUse", "PostToolUse", "Notification", "Stop"):
        fire(collector.http, event, "cc-1", lastactive_env)
    s = collector.session("cc-1")
    assert s is not None
    assert s["last_active"] == prompted  # tool use, a notification and Stop are not engagement
    assert s["last_source"] == "agent"  # ... but the agent's work ends idleness
    assert {"prompt", "agent", "heartbeat", "start"} <= set(s["sources"])

    fire(collector.http, "SessionEnd", "cc-1", lastactive_env)
    s = collector.session("cc-1")
    assert s is not None
    assert (s["status"], s["result"]) == ("completed", "prompt_input_exit")
    assert s["last_active"] == prompted


def test_collector_down_or_hanging_the_hook_still_exits_zero(
    lastactive_env: dict[str, str],
) -> None:
    fire("http://127.0.0.1:9", "UserPromptSubmit", "down", lastactive_env)  # refused
    with socket.socket() as hanging:  # accepts connections (backlog), never answers
        hanging.bind(("127.0.0.1", 0))
        hanging.listen(8)
        port = hanging.getsockname()[1]
        began = time.monotonic()
        fire(f"http://127.0.0.1:{port}", "UserPromptSubmit", "hang", lastactive_env)
        assert time.monotonic() - began < HOOK_BOUND_S
    for garbage in (b"", b"not json", b"[1]", b'{"hook_event_name": "Stop"}'):
        done = subprocess.run(
            [*HOOK, "--url", "http://127.0.0.1:9"], input=garbage, capture_output=True,
            env=lastactive_env, timeout=HOOK_BOUND_S, check=False,
        )  # fmt: skip
        assert (done.returncode, done.stdout) == (0, b"")


def test_what_the_collector_missed_is_delivered_by_the_next_hook(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    """A prompt sent while the collector is down is spooled in the user's state directory and
    delivered (with its own time) by the next hook call that reaches the collector."""
    began = time.monotonic()
    fire("http://127.0.0.1:9", "UserPromptSubmit", "missed", lastactive_env)
    assert time.monotonic() - began < HOOK_BOUND_S
    spool = Path(lastactive_env["XDG_STATE_HOME"]) / "lastactive" / "spool"
    assert len(list(spool.glob("*.json"))) == 1
    assert collector.session("missed") is None
    fire(collector.http, "PreToolUse", "later", lastactive_env)
    missed = collector.session("missed")
    assert missed is not None and missed["last_source"] == "prompt"
    later = collector.session("later")
    assert later is not None and missed["last_active"] < later["sources"]["agent"]
    assert abs(missed["clock_offset_seconds"]) < 1  # delivery re-stamps the observed time
    assert list(spool.glob("*")) == []


def order(collector: CollectorClient) -> list[str]:
    status, body = collector.get("/v1/sessions")
    assert status == 200
    return [s["id"] for s in body["sessions"]]


def session(collector: CollectorClient, sid: str) -> dict[str, Any]:
    s = collector.session(sid)
    assert s is not None
    return s


def test_seed_002_sort_by_last_prompt(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    for mission in ("A", "B", "C"):
        fire(collector.http, "SessionStart", mission, lastactive_env)
    for mission in ("A", "B", "C"):
        fire(collector.http, "UserPromptSubmit", mission, lastactive_env)
    assert order(collector) == ["C", "B", "A"]
    # Heartbeats (wrapper liveness) do not reorder what the user last used.
    fire(collector.http, "Notification", "A", lastactive_env)
    assert order(collector) == ["C", "B", "A"]
    fire(collector.http, "UserPromptSubmit", "A", lastactive_env)
    assert order(collector) == ["A", "C", "B"]


def test_seed_002_stopped_mission_keeps_last_active(
    collector_process: Collector, lastactive_env: dict[str, str]
) -> None:
    fire(collector_process.http, "SessionStart", "A", lastactive_env)
    fire(collector_process.http, "UserPromptSubmit", "A", lastactive_env)
    prompted = session(collector_process, "A")["last_active"]
    fire(collector_process.http, "SessionEnd", "A", lastactive_env)
    stopped = session(collector_process, "A")
    assert (stopped["status"], stopped["last_active"]) == ("completed", prompted)
    collector_process.stop()
    again = Collector(collector_process.db).start()
    try:
        restored = session(again, "A")
        assert (restored["status"], restored["last_active"]) == ("completed", prompted)
    finally:
        again.stop()


def test_seed_002_missions_without_prompts_sort_after_by_heartbeat(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    for mission in ("A", "B"):
        fire(collector.http, "SessionStart", mission, lastactive_env)
        fire(collector.http, "UserPromptSubmit", mission, lastactive_env)
    fire(collector.http, "SessionStart", "D", lastactive_env)
    fire(collector.http, "SessionStart", "C", lastactive_env)
    fire(collector.http, "Notification", "D", lastactive_env)  # D's heartbeat is older
    fire(collector.http, "Notification", "C", lastactive_env)  # C's is the newest of all
    assert order(collector) == ["B", "A", "C", "D"]
    assert session(collector, "C")["last_active"] is None


def test_turns_and_tool_calls(collector: CollectorClient, lastactive_env: dict[str, str]) -> None:
    """Issue 10 (4, 10): a tool call in flight holds the session (not idle, not stuck); Stop
    gives the turn to the user (waiting: may go idle, never stuck); a failed tool call ends
    its hold too."""
    fire(collector.http, "SessionStart", "t-1", lastactive_env)
    assert session(collector, "t-1")["turn"] == "waiting"  # opened: awaits a prompt
    fire(collector.http, "UserPromptSubmit", "t-1", lastactive_env)
    fire(collector.http, "PreToolUse", "t-1", lastactive_env)
    s = session(collector, "t-1")
    assert s["turn"] == "working" and s["hibernate_at"] is None
    assert [(h["kind"], h["id"], h["counts"]) for h in s["held_by"]] == [
        ("tool", "Bash/toolu_01ABC", True)
    ]
    assert s["stuck_reason"].startswith("tool call Bash/toolu_01ABC in flight since")
    fire(collector.http, "PermissionRequest", "t-1", lastactive_env)  # the tool holds on
    assert [h["id"] for h in session(collector, "t-1")["held_by"]] == ["Bash/toolu_01ABC"]
    fire(collector.http, "PostToolUse", "t-1", lastactive_env)
    s = session(collector, "t-1")
    assert s["held_by"] == [] and s["hibernate_at"] is not None
    fire(collector.http, "PostToolUseFailure", "t-1", lastactive_env)  # another call's end
    fire(collector.http, "SubagentStart", "t-1", lastactive_env)
    fire(collector.http, "Stop", "t-1", lastactive_env)
    s = session(collector, "t-1")
    assert (s["turn"], s["stuck"], s["last_source"]) == ("waiting", False, "agent")
    assert s["stuck_reason"].startswith("waiting for the user since")
    fire(collector.http, "SessionEnd", "t-1", lastactive_env)
    s = session(collector, "t-1")
    assert (s["turn"], s["state"], s["status"]) == ("ended", "ended", "completed")
