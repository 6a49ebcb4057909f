"""The policy with real processes: overrides selected by the resource attributes of real
``lastactive run`` wrappers, and ``lastactive serve`` refusing an invalid policy file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.helpers import Collector, CollectorClient, wait_for


def run_idle(collector: CollectorClient, env: dict[str, str], sid: str, resource: str) -> Any:
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
