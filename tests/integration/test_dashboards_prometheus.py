"""Alert rules pass promtool, and every panel's query returns data from a real Prometheus
scraping a real ``lastactive serve`` (Debian's prometheus; .ci/run installs it)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import trustme

from lastactive.collector._auth import Scope, create_credential
from tests.helpers import DASHBOARDS, Collector, free_port, stop_process, targets, wait_for

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None, reason="needs Debian's prometheus (.ci/run installs it)"
)


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


@needs_prometheus
def test_the_shipped_prometheus_config_scrapes_a_collector_with_tls_and_a_token(
    tmp_path: Path,
) -> None:
    """dashboards/prometheus.yml as shipped (only the target's port changed), its token file
    and CA beside it, against a collector with --auth-file and --tls-cert."""
    assert PROMETHEUS is not None
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    auth = tmp_path / "auth.json"
    _, tok = create_credential(auth, [Scope.READ], name="prometheus")
    conf = tmp_path / "prom"
    conf.mkdir()
    (conf / "prometheus.token").write_text(f"{tok}\n")
    ca.cert_pem.write_to_path(str(conf / "ca.pem"))
    shutil.copy(DASHBOARDS / "alerts.yaml", conf / "alerts.yaml")
    c = Collector(tmp_path / "db", "--auth-file", str(auth), "--tls-cert", str(cert),
                  "--tls-key", str(key)).start()  # fmt: skip
    shipped = (DASHBOARDS / "prometheus.yml").read_text()
    assert '"127.0.0.1:4318"' in shipped
    (conf / "prometheus.yml").write_text(
        shipped.replace('"127.0.0.1:4318"', f'"127.0.0.1:{c.http_port}"').replace(
            "scrape_interval: 15s", "scrape_interval: 1s"
        )
    )
    port = free_port()
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={conf / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _ready(url), timeout=60, what="prometheus ready")
        wait_for(lambda: prom_query(url, 'up{job="lastactive"} == 1'), timeout=60,
                 what="the secured collector scraped")  # fmt: skip
        assert prom_query(url, "lastactive_credentials == 1")
        assert not prom_query(url, "lastactive_auth_failures_total > 0")
    finally:
        stop_process(prom)
        c.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
