"""``GET /v1/decisions`` and gRPC ``Decisions`` on a real collector with a policy file."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lastactive.collector.proto import query_pb2
from tests.collector.otlp_requests import S, metrics_request, sum_point
from tests.conftest import Collector, wait_for

PROTO = {"Content-Type": "application/x-protobuf"}


def last_input(collector: Collector, sid: str, seconds_ago: float) -> None:
    t = time.time_ns() - int(seconds_ago * S)
    req = metrics_request(sid, host_id=f"h-{sid}", gauges={"lastactive.source.last_time": [
        sum_point(0, time.time_ns(), 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S
    assert collector.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200


def test_decisions_over_http_and_grpc(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 30\nhibernate_after = 60\n"
        "[[overrides]]\nmatch = { session_prefix = 'keep-' }\nhibernate_after = 3600\n"
    )
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
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


def run_idle(collector: Collector, env: dict[str, str], sid: str, resource: str) -> Any:
    """``lastactive run`` of a program that prints once and stays, its resource given by the
    standard ``OTEL_RESOURCE_ATTRIBUTES`` (the OTel SDK reads it)."""
    return subprocess.Popen(
        [sys.executable, "-m", "lastactive", "run", "--session-id", sid,
         "--endpoint", f"http://{collector.grpc_target}", "--", "sh", "-c", "echo hi; sleep 60"],
        env={**env, "OTEL_RESOURCE_ATTRIBUTES": resource}, stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_overrides_select_sessions_by_resource_attributes(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 600\nhibernate_after = 3600\n"
        "[[overrides]]\nmatch = { attributes = { 'deployment.environment.name' = 'ci' } }\n"
        "idle_after = 1\nhibernate_after = 2\n"
    )
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    runs = [
        run_idle(c, lastactive_env, "ci-job", "deployment.environment.name=ci,team=infra"),
        run_idle(c, lastactive_env, "dev-box", "deployment.environment.name=dev"),
    ]
    try:
        ci = wait_for(lambda: c.session("ci-job"), what="the ci session")
        # Only the keys the policy selects on are kept (not team), on the session.
        assert ci["attributes"] == {"deployment.environment.name": "ci"}
        dev = wait_for(lambda: c.session("dev-box"), what="the dev session")
        assert dev["attributes"] == {"deployment.environment.name": "dev"}
        assert c.get(f"/v1/hosts/{ci['host_id']}")[1]["attributes"] == {}
        body = wait_for(
            lambda: (
                (b := c.get("/v1/decisions?within=7200")[1])
                and any(d["id"] == "ci-job" for d in b["hibernate"])
                and b
            ),
            what="the ci session due",
        )
        (due,) = (d for d in body["hibernate"] if d["id"] == "ci-job")
        assert "hibernate_after 2 s" in due["reason"]
        assert "dev-box" not in {d["id"] for d in body["hibernate"]}
        assert "dev-box" in {d["id"] for d in body["due_soon"]}
        for run in runs:
            run.terminate()
            run.wait(timeout=20)
        c.stop()
        c.start()  # kept in the database
        assert c.grpc_session("ci-job").attributes == {"deployment.environment.name": "ci"}
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
        c.stop()


def test_serve_refuses_an_invalid_policy(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_afterr = 30\n")
    done = subprocess.run(
        [sys.executable, "-m", "lastactive", "serve", "--policy", str(policy),
         "--db", str(tmp_path / "x.db"), "--grpc-port", "0", "--http-port", "0"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "defaults.idle_afterr" in done.stderr
