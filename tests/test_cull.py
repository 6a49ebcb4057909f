"""``lastactive cull`` against the real servers in this process: acts once per deadline, records
the hibernation back, and a dry run only logs."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lastactive._cull import CommandAction, Culler, cull_command
from lastactive.collector._auth import Scope, create_credential
from tests.helpers import InProcessCollector, S, metrics_request, sum_point, wait_for

PROTO = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def idle_collector(tmp_path: Path) -> Iterator[InProcessCollector]:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\nhibernate_after = 2\n")
    c = InProcessCollector(policy=policy).start()
    t = time.time_ns() - 10 * S
    req = metrics_request("old", host_id="h-old", gauges={"lastactive.source.last_time": [
        sum_point(0, time.time_ns(), 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S
    assert c.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200
    yield c
    c.stop()


def test_dry_run_acts_on_nothing(idle_collector: InProcessCollector) -> None:
    acted: list[dict[str, Any]] = []
    culler = Culler(idle_collector.http, acted.append, dry_run=True)
    outcomes = {d["id"]: how for d, how in culler.once()}
    assert outcomes == {"old": "dry-run", "h-old": "dry-run"} and acted == []


def test_acts_once_per_deadline_and_records_the_hibernation(
    idle_collector: InProcessCollector,
) -> None:
    acted: list[dict[str, Any]] = []
    culler = Culler(idle_collector.http, acted.append)
    assert sorted(how for _, how in culler.once()) == ["hibernated", "hibernated"]
    assert sorted(d["id"] for d in acted) == ["h-old", "old"]
    assert culler.once() == []  # recorded back: no longer due, and never twice anyway
    s = wait_for(lambda: idle_collector.session("old"), what="the session")
    assert "hibernate" in s["sources"]
    status, decisions = idle_collector.get("/v1/decisions?within=0")
    assert status == 200 and decisions["hibernate"] == []


def test_a_failed_action_is_retried_next_round(idle_collector: InProcessCollector) -> None:
    calls: list[str] = []

    def flaky(d: dict[str, Any]) -> None:
        calls.append(d["id"])
        if len(calls) <= 2:
            raise OSError("hypervisor busy")

    culler = Culler(idle_collector.http, flaky, concurrency=1)
    assert all(how.startswith("failed") for _, how in culler.once())
    assert sorted(how for _, how in culler.once()) == ["hibernated", "hibernated"]


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Culler("http://127.0.0.1:1", None, concurrency=0)


# --- the culler acts only on what a decision is about, with values it can pass safely --------

INPUT = {"lastactive.source": "input"}


def _last_input(c: InProcessCollector, sid: str, host: str, seconds_ago: float) -> None:
    now = time.time_ns()
    req = metrics_request(sid, host_id=host, gauges={"lastactive.source.last_time": [
        sum_point(0, now, 0, **INPUT)]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = (
        now / S - seconds_ago
    )
    assert c.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A real program that appends the arguments it was given (one JSON list per run)."""
    log = tmp_path / "argv.log"
    script = tmp_path / "record.py"
    script.write_text(
        "import json, sys\n"
        f"with open({str(log)!r}, 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
    )
    return f"{sys.executable} {script}", log


def _runs(log: Path) -> list[list[str]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_a_session_decision_never_acts_on_its_busy_host(
    tmp_path: Path, recorder: tuple[str, Path]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\nhibernate_after = 2\n")
    c = InProcessCollector(policy=policy).start()
    try:
        _last_input(c, "forged", "victim-host", 10)  # one idle session on a busy host
        _last_input(c, "busy", "victim-host", 0)
        command, log = recorder
        culler = Culler(c.http, CommandAction(f"{command} suspend {{host_id}}"))
        outcomes = {d["id"]: how for d, how in culler.once()}
        assert outcomes == {"forged": "refused: the host's own decision is not to hibernate"}
        assert _runs(log) == []
        # The session's own template acts on the session alone.
        culler = Culler(c.http, CommandAction(f"{command} stop {{kind}} {{id}}"))
        assert {d["id"]: how for d, how in culler.once()} == {"forged": "hibernated"}
        assert _runs(log) == [["stop", "session", "forged"]]
    finally:
        c.stop()


def test_hostile_ids_are_refused_and_values_stay_one_argument(
    tmp_path: Path, recorder: tuple[str, Path]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\nhibernate_after = 2\n")
    c = InProcessCollector(policy=policy).start()
    hostile = ["--help", "../../etc/passwd", "a/b", "-rf", "x\ny", ".."]
    try:
        for sid in [*hostile, "ok; rm -rf ~ $(id)"]:
            _last_input(c, sid, "h-idle", 10)
        command, log = recorder
        culler = Culler(c.http, CommandAction(f"{command} --session={{id}} {{id}}"))
        outcomes = {d["id"]: how for d, how in culler.once()}
        assert all(outcomes[sid].startswith("refused: refusing id=") for sid in hostile)
        assert outcomes["ok; rm -rf ~ $(id)"] == "hibernated"
        assert outcomes["h-idle"] == "hibernated"  # the host, by its own decision
        runs = _runs(log)
        assert sorted(runs) == sorted([
            ["--session=ok; rm -rf ~ $(id)", "ok; rm -rf ~ $(id)"],
            ["--session=h-idle", "h-idle"],
        ])  # fmt: skip
    finally:
        c.stop()


@pytest.mark.parametrize(
    "template",
    [
        "sh -c 'virsh suspend {host_id}'",
        '/bin/bash -c "suspend {id}"',
        "python3 -c 'print(\"{id}\")'",
        "{id} --now",
        "",
    ],
)
def test_templates_that_would_run_a_value_as_code_are_refused(template: str) -> None:
    with pytest.raises(ValueError):
        CommandAction(template)


def test_safe_template_forms_are_taken() -> None:
    for template in (
        "virsh suspend {host_id}",
        "sh -c 'suspend-session \"$1\"' sh {id}",
        "systemctl stop lastactive-{id}.service",
    ):
        assert CommandAction(template).argv


def test_the_cull_command_refuses_an_unsafe_template() -> None:
    assert cull_command("http://127.0.0.1:1", command="sh -c 'x {id}'", http=None,
                        dry_run=False, concurrency=1, interval=1, once=True) == 2  # fmt: skip


def test_the_culler_reads_and_records_with_its_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    auth = tmp_path / "auth.json"
    _, reporter = create_credential(auth, [Scope.REPORT], name="reporter")
    _, culler_token = create_credential(auth, [Scope.READ, Scope.ACT], name="culler")
    _, reader = create_credential(auth, [Scope.READ], name="reader")
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\nhibernate_after = 2\n")
    c = InProcessCollector(policy=policy, auth_file=auth).start()
    try:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", f"Authorization=Bearer%20{reporter}")
        now = time.time_ns()
        req = metrics_request("idle-1", host_id="h", gauges={"lastactive.source.last_time": [
            sum_point(0, now, 0, **INPUT)]})  # fmt: skip
        req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = (
            now / S - 10
        )
        assert post_json_status(c.http + "/v1/metrics", req.SerializeToString(), reporter) == 200
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_HEADERS")
        acted: list[dict[str, Any]] = []
        with pytest.raises(OSError, match="401"):
            Culler(c.http, acted.append).once()
        monkeypatch.setenv("LASTACTIVE_TOKEN", str(reader))  # read, but not act
        assert {how for _, how in Culler(c.http, acted.append).once()} == {"hibernated"}
        # Recording the hibernation needed act: refused (logged), so it is still due.
        monkeypatch.setenv("LASTACTIVE_TOKEN", str(culler_token))
        culler = Culler(c.http, acted.append)
        assert {how for _, how in culler.once()} == {"hibernated"}
        assert culler.once() == []  # recorded back with the act scope: no longer due
    finally:
        c.stop()


def post_json_status(url: str, body: bytes, token: str | None) -> int:
    import urllib.request

    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", "Authorization": f"Bearer {token}"})  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(r.status)
