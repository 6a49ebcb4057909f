"""Seed 004's webhook flow against a real collector: spawn, progress, complete; bad payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import CollectorClient, InProcessCollector, S

T0 = 1_800_000_000 * S

JSON = {"Content-Type": "application/json"}


def post(collector: CollectorClient, body: Any) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, resp, _ = collector.post("/v1/agent-events", raw, JSON)
    return status, json.loads(resp)


def test_spawn_progress_complete(collector: CollectorClient) -> None:
    status, s = post(
        collector,
        {
            "action": "spawn",
            "sessionKey": "abc-123-xyz",
            "agentName": "codey",
            "task": "Fix Mission Control bugs",
        },
    )
    assert status == 200
    assert (s["status"], s["task"], s["agent_id"]) == (
        "active",
        "Fix Mission Control bugs",
        "codey",
    )
    assert s["last_source"] == "start"

    status, s = post(
        collector,
        {"action": "progress", "sessionKey": "abc-123-xyz", "task": "Half of the bugs fixed"},
    )
    assert status == 200
    assert (s["status"], s["task"], s["last_source"]) == (
        "active",
        "Half of the bugs fixed",
        "agent",
    )

    status, s = post(
        collector,
        {
            "action": "complete",
            "sessionKey": "abc-123-xyz",
            "agentName": "codey",
            "task": "Testing complete",
            "result": "All bugs fixed!",
        },
    )
    assert status == 200
    assert (s["status"], s["result"], s["last_source"]) == ("completed", "All bugs fixed!", "exit")
    assert s["process"]["status"] == "exited"
    assert collector.session("abc-123-xyz") == {
        **s,
        "idle_seconds": pytest.approx(s["idle_seconds"], abs=5),
    }

    status, s = post(
        collector,
        {
            "action": "error",
            "sessionKey": "other",
            "agentName": "movy",
            "result": "model quota exhausted",
        },
    )
    assert (status, s["status"], s["result"]) == (200, "error", "model quota exhausted")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "invalid agent event"),
        ({"sessionKey": "abc"}, "action"),
        ({"action": "explode", "sessionKey": "abc"}, "action"),
        ({"action": "spawn"}, "sessionKey"),
        ({"action": "spawn", "sessionKey": ""}, "sessionKey"),
        ({"action": 7, "sessionKey": "abc"}, "action"),
        ([{"action": "spawn", "sessionKey": "abc"}], "invalid agent event"),
    ],
)
def test_malformed_payloads_get_400_and_change_nothing(
    collector: CollectorClient, body: Any, says: str
) -> None:
    status, _ = post(collector, {"action": "spawn", "sessionKey": "abc", "task": "keep me"})
    assert status == 200
    before = collector.session("abc")
    status, resp = post(collector, body)
    assert status == 400
    assert says in resp["detail"]
    after = collector.session("abc")
    assert after is not None and before is not None
    for key in ("status", "task", "sources", "last_seen", "first_seen"):
        assert after[key] == before[key], key
    assert collector.get("/v1/sessions")[1]["sessions"][0]["id"] == "abc"
    assert len(collector.get("/v1/sessions")[1]["sessions"]) == 1


def test_an_agent_working_through_the_webhook_is_in_use(tmp_path: Path) -> None:
    """Issue 10 (5): progress every second past never_used is work, and work is use."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 60\nnever_used = 600\n")
    now = [T0]
    c = InProcessCollector(policy=policy, clock=lambda: now[0]).start()
    try:
        post(c, {"action": "spawn", "sessionKey": "w", "agentName": "codey"})
        for _ in range(700):
            now[0] += S
            assert post(c, {"action": "progress", "sessionKey": "w"})[0] == 200
        _, body = c.get("/v1/decisions?within=600")
        assert "w" not in {d["id"] for d in body["hibernate"] + body["due_soon"]}
        post(c, {"action": "spawn", "sessionKey": "unused", "agentName": "codey"})
        now[0] += 600 * S
        _, body = c.get("/v1/decisions")
        (d,) = [d for d in body["hibernate"] if d["id"] == "unused"]
        assert "never_used 600 s" in d["reason"]
    finally:
        c.stop()
