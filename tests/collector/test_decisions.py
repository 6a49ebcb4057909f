"""``GET /v1/decisions`` and gRPC ``Decisions`` on the real servers (in this process) with a
policy file."""

from __future__ import annotations

from pathlib import Path

from lastactive.collector.proto import query_pb2
from tests.helpers import InProcessCollector, last_input

PROTO = {"Content-Type": "application/x-protobuf"}


def test_decisions_over_http_and_grpc(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 30\nhibernate_after = 60\n"
        "[[overrides]]\nmatch = { session_prefix = 'keep-' }\nhibernate_after = 3600\n"
    )
    c = InProcessCollector(policy=policy).start()
    try:
        last_input(c, "old", 100)
        last_input(c, "soon", 10)
        last_input(c, "keep-me", 100)
        status, body = c.get("/v1/decisions?within=3600")
        assert status == 200
        due = {d["id"]: d for d in body["hibernate"]}
        # Hosts count their sessions' activity; the override matches the session, not its host.
        assert set(due) == {"old", "h-old", "h-keep-me"}
        assert due["old"]["state"] == "idle" and "hibernate_after 60 s" in due["old"]["reason"]
        soon = [d["id"] for d in body["due_soon"]]
        assert set(soon[:2]) == {"soon", "h-soon"} and soon[2:] == ["keep-me"]
        channel, stub = c.grpc_stub()
        with channel:
            resp = stub.Decisions(query_pb2.DecisionsRequest(within_seconds=3600), timeout=10)
        assert {d.id for d in resp.hibernate} == set(due)
        assert [d.id for d in resp.due_soon][2:] == ["keep-me"]
        assert all(d.hibernate_at_unix_nano > 0 and d.reason for d in resp.hibernate)
    finally:
        c.stop()
