"""Dashboards and alert rules: reproducible, valid Grafana JSON, and every panel's query returns
data from a real Prometheus scraping a real ``lastactive serve``; /metrics passes promtool and
keeps per-session series bounded."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.collector.otlp_requests import kv
from tests.conftest import Collector, free_port, stop_process, wait_for

DASHBOARDS = Path(__file__).parents[2] / "dashboards"
PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="needs Debian's prometheus (.ci/run installs it)"
)


def generated() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: dict[str, str] = module.render()
    return rendered


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DASHBOARDS / name).read_text()) for name in generated()}


def targets() -> Iterator[tuple[str, str, str]]:
    for name, board in boards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield name, panel["title"], target["expr"]


def test_committed_json_is_what_the_code_generates() -> None:
    for name, text in generated().items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"run python dashboards/generate.py ({name})"
        )


def test_dashboards_are_valid_grafana_json() -> None:
    uids = set()
    for name, board in boards().items():
        assert board["schemaVersion"] >= 36 and board["title"] and board["uid"] not in uids, name
        uids.add(board["uid"])
        names = [v["name"] for v in board["templating"]["list"]]
        assert {"datasource", "host", "agent"} <= set(names), name
        assert (
            next(v for v in board["templating"]["list"] if v["name"] == "datasource")["query"]
            == "prometheus"
        )
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert target["refId"]
        text = json.dumps(board)
        uids_used = {d["uid"] for d in _datasources(board)}
        assert uids_used == {"${datasource}"}, (name, uids_used)  # no hard-coded datasource
        assert ("$host" in text and "$agent" in text) or name != "runaway.json"


def _datasources(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        ds = obj.get("datasource")
        if isinstance(ds, dict):
            yield ds
        for v in obj.values():
            yield from _datasources(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _datasources(v)


@needs_prometheus
def test_alert_rules_pass_promtool() -> None:
    assert PROMTOOL is not None
    done = subprocess.run(
        [PROMTOOL, "check", "rules", str(DASHBOARDS / "alerts.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 rules found" in done.stdout


def prom_query(url: str, expr: str) -> list[Any]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def substitute(expr: str) -> str:
    return expr.replace("$__rate_interval", "10s").replace("$host", ".*").replace("$agent", ".*")


@needs_prometheus
def test_every_panel_query_returns_data_from_a_real_prometheus(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    assert PROMETHEUS is not None and PROMTOOL is not None
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 2\nhibernate_after = 4\nstuck_after = 2\n"
        "runaway_bytes_per_second = 100000\n"
    )
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    runs, prom = [], None
    try:
        for sid, program in (
            ("spin", "yes spinning | head -c 20000000; sleep 120"),
            ("quiet", "echo hello; sleep 120"),
        ):
            runs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "lastactive",
                        "run",
                        "--session-id",
                        sid,
                        "--endpoint",
                        f"http://{c.grpc_target}",
                        "--",
                        "sh",
                        "-c",
                        program,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    env=lastactive_env,
                )
            )
        body = json.dumps(
            {
                "action": "spawn",
                "sessionKey": "stuck-1",
                "agentName": "codey",
                "task": "Fix the flaky test",
            }
        ).encode()
        assert c.post("/v1/agent-events", body, {"Content-Type": "application/json"})[0] == 200
        assert c.post("/v1/metrics", b"x", {"Content-Type": "text/plain"})[0] == 415

        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            f"rule_files: ['{DASHBOARDS / 'alerts.yaml'}']\n"
            "scrape_configs:\n  - job_name: lastactive\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{c.http_port}']\n"
        )
        prom = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, timeout=60, what="prometheus ready")
        for expr in (
            "lastactive_session_runaway == 1",
            "lastactive_session_stuck_seconds",
            'lastactive_sessions{state="idle"} > 0',
        ):
            wait_for(lambda e=expr: prom_query(url, e), timeout=60, what=expr)  # type: ignore[misc]
        time.sleep(12)  # rates over [10s] need samples spanning the window

        empty = [
            (name, title, expr)
            for name, title, expr in targets()
            if not prom_query(url, substitute(expr))
        ]
        assert not empty

        with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as r:
            exposition = r.read()
        checked = subprocess.run(
            [PROMTOOL, "check", "metrics"],
            input=exposition,
            capture_output=True,
            timeout=60,
            check=False,
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
    finally:
        for run in runs:
            run.kill()
            run.wait()
        if prom is not None:
            stop_process(prom)
        c.stop()


def io_request(n: int, t: int) -> bytes:
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=t,
            start_time_unix_nano=t - 1,
            as_int=1000 * (i + 1),
            attributes=kv({"session.id": f"many-{i}", "network.io.direction": "transmit"}),
        )
        for i in range(n)
    ]
    metric = metrics_pb2.Metric(
        name="lastactive.session.io",
        sum=metrics_pb2.Sum(
            data_points=points,
            is_monotonic=True,
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
        ),
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={"attributes": kv({"host.id": "fleet-host"})},
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])],
            )
        ]
    ).SerializeToString()


def test_per_session_series_stay_bounded_while_fleet_totals_stay_exact(tmp_path: Path) -> None:
    c = Collector(tmp_path / "state.db", "--metrics-top-sessions", "5").start()
    try:
        status, _, _ = c.post(
            "/v1/metrics",
            io_request(3000, time.time_ns()),
            {"Content-Type": "application/x-protobuf"},
        )
        assert status == 200

        def scrape() -> list[str]:
            with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as r:
                return r.read().decode().splitlines()

        lines = wait_for(
            lambda: (ls := scrape()) and 'lastactive_sessions{state="active"} 3000.0' in ls and ls,
            timeout=30,
            what="3000 active sessions",
        )
        per_session = [
            ln for ln in lines if ln.startswith("lastactive_session_output_bytes_per_second{")
        ]
        assert len(per_session) == 5
        assert 'session_id="many-2999"' in per_session[0]  # the busiest first
        assert 'lastactive_host_sessions{host_id="fleet-host",state="active"} 3000.0' in lines
        assert "lastactive_sessions_idle_seconds_count 3000.0" in lines
    finally:
        c.stop()
