"""Claude Code's own OpenTelemetry (no hooks): its metrics, events and spans, in the shapes its
documentation gives (``tests/fixtures/claude_code_telemetry``), posted as OTLP/JSON to the
collector's real HTTP receiver, give prompt engagement, agent work and the turn."""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

from tests.helpers import CollectorClient, S

FIXTURES = Path(__file__).parents[1] / "fixtures" / "claude_code_telemetry"


def post(collector: CollectorClient, signal: str, now_ns: int) -> dict[str, object]:
    text = (FIXTURES / f"{signal}.json").read_text()
    text = re.sub(r'"@T-(\d+)"', lambda m: f'"{now_ns - int(m[1]) * S}"', text)
    status, body, _ = collector.post(
        f"/v1/{signal}", text.encode(), {"Content-Type": "application/json"}
    )
    assert status == 200, body
    reply: dict[str, object] = json.loads(body or b"{}")
    return reply


def ago(iso: str, now_ns: int) -> float:
    """How many seconds before ``now_ns`` the API's ``iso`` time is."""
    return now_ns / S - datetime.fromisoformat(iso).timestamp()


def test_events_give_prompt_engagement_agent_work_and_the_turn(
    collector: CollectorClient,
) -> None:
    now = time.time_ns()
    assert post(collector, "logs", now) == {}  # nothing rejected (no partialSuccess)
    s = collector.session("cc-7f3a")
    assert s is not None
    # The prompt is engagement: last_active. The model's answers and tools are work.
    assert abs(ago(s["last_active"], now) - 20) < 1
    assert s["last_source"] == "agent" and abs(ago(s["sources"]["agent"], now)) < 1
    assert set(s["sources"]) == {"prompt", "agent"}
    assert s["turn"] == "working" and s["service_name"] == "claude-code"


def test_counters_give_the_start_the_users_time_and_the_agents(
    collector: CollectorClient,
) -> None:
    now = time.time_ns()
    assert post(collector, "metrics", now) == {}
    s = collector.session("cc-9d1e")
    assert s is not None
    # session.count: the start; active_time{type=user}: engagement; {type=cli}, tokens, cost:
    # the agent's work; a counter that did not rise (lines_of_code 0) is no activity.
    assert set(s["sources"]) == {"start", "prompt", "agent"}
    assert all(abs(ago(v, now)) < 1 for v in s["sources"].values())
    assert abs(ago(s["last_active"], now)) < 1


def test_the_interaction_span_hands_the_turn_to_the_user(collector: CollectorClient) -> None:
    now = time.time_ns()
    assert post(collector, "traces", now) == {}
    s = collector.session("cc-trace")
    assert s is not None
    assert s["turn"] == "waiting" and s["stuck_reason"].startswith("waiting for the user")
    assert set(s["sources"]) == {"agent"} and s["last_active"] is None
