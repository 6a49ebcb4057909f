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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trustme

from lastactive.collector._auth import Scope, create_credential
from tests.helpers import (
    DASHBOARDS,
    Collector,
    free_port,
    last_input,
    stop_process,
    targets,
    wait_for,
)

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
    assert "5 rules found" in done.stdout


def prom_query(url: str, expr: str) -> list[Any]:
    q = urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=10) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    result: list[Any] = body["data"]["result"]
    return result


def substitute(expr: str) -> str:
    return expr.replace("$__rate_interval", "10s").replace("$host", ".*").replace("$agent", ".*")


def _labels(result: list[Any], key: str) -> set[str]:
    return {r["metric"].get(key, "") for r in result}


def _value(result: list[Any]) -> float:
    (only,) = result
    return float(only["value"][1])


# What each panel must show with a runaway session ("spin", output above the policy's rate), an
# idle one ("quiet"), and a stuck agent ("stuck-1", codey): (board, title) -> check of the
# panel's first query's result. Every panel has one (a new panel needs its expectation).
Check = Callable[[list[Any]], bool]
EXPECTED: dict[tuple[str, str], Check] = {
    ("runaway.json", "Output bytes/s, busiest sessions"): lambda r: (
        "spin" in _labels(r, "session_id")
    ),
    ("runaway.json", "Runaway sessions now"): lambda r: _value(r) == 1,
    ("runaway.json", "Stuck agents now"): lambda r: _value(r) == 1,
    # Issue 14: the time spin has been runaway (well under a minute here), never the hour.
    ("runaway.json", "Time spent runaway in the last hour (seconds)"): lambda r: (
        _labels(r, "session_id") == {"spin"} and 0 < _value(r) < 120
    ),
    ("runaway.json", "Stuck agents: task and seconds without progress"): lambda r: (
        _labels(r, "session_id") == {"stuck-1"} and _labels(r, "task") == {"Fix the flaky test"}
    ),
    ("runaway.json", "Sessions by output bytes/s (link: state in the API)"): lambda r: (
        "spin" in _labels(r, "session_id")
    ),
    ("fleet.json", "Sessions active, idle, hibernated"): lambda r: (
        {"active", "idle"} <= _labels(r, "state")
    ),
    ("fleet.json", "Hibernation: due now and hibernated"): lambda r: (
        _labels(r, "state") == {"hibernate_due", "hibernated"}
    ),
    ("fleet.json", "How long sessions have been idle (last_active distribution)"): lambda r: (
        "+Inf" in _labels(r, "le")
        and max(float(x["value"][1]) for x in r) == 3  # spin, quiet, stuck-1
    ),
    ("fleet.json", "Sessions per host"): lambda r: len(r) >= 1,
    ("fleet.json", "Presence vs engagement vs work (sessions, last 5 min)"): lambda r: (
        {"work", "lifecycle"} <= _labels(r, "class")
    ),
    ("fleet.json", "Activity updates per second, by source"): lambda r: (
        "output" in _labels(r, "source")
    ),
    ("collector.json", "Ingest: data points/s by signal and transport"): lambda r: (
        ("metrics", "grpc") in {(x["metric"]["signal"], x["metric"]["transport"]) for x in r}
    ),
    ("collector.json", "Rejected data points/s and failed requests/s"): lambda r: (
        "http" in _labels(r, "transport")  # the 415 this test provoked
    ),
    ("collector.json", "Ingest latency p50 / p99"): lambda r: len(r) == 1,
    ("collector.json", "Write-behind: last flush duration and rows"): lambda r: len(r) == 1,
    ("collector.json", "Watchers: subscribers, queued transitions, resyncs/s"): lambda r: (
        _value(r) == 0
    ),
    ("collector.json", "Transitions/s by kind"): lambda r: "runaway" in _labels(r, "field"),
    # One process has no replica series (replicas: test_the_fleet_board_sums_replicas_...).
    ("collector.json", "Replicas: shards evaluated and entities in memory, each"): lambda r: (
        r == []
    ),
}


@needs_prometheus
def test_every_panel_shows_what_it_should_and_the_alerts_fire(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    """A real Prometheus scraping a real collector with a runaway, an idle and a stuck session
    (and a second target that is down): each panel's query returns the series it should, and
    the per-session alerts and the collector-down alert go pending with their labels."""
    assert PROMETHEUS is not None and PROMTOOL is not None
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 2\nhibernate_after = 600\nstuck_after = 2\n"
        "runaway_bytes_per_second = 100000\n"
    )
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    runs, prom = [], None
    started = time.monotonic()
    try:
        for sid, program in (
            # 200 KB a second, above the policy's 100 KB/s, for as long as the test runs.
            ("spin", "while :; do head -c 200000 /dev/zero; sleep 1; done"),
            ("quiet", "echo hello; sleep 120"),
        ):
            argv = [sys.executable, "-m", "lastactive", "run", "--session-id", sid,
                    "--endpoint", f"http://{c.grpc_target}", "--", "sh", "-c", program]  # fmt: skip
            runs.append(
                subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=lastactive_env
                )
            )
        body = json.dumps(
            {"action": "spawn", "sessionKey": "stuck-1", "agentName": "codey",
             "task": "Fix the flaky test"}
        ).encode()  # fmt: skip
        assert c.post("/v1/agent-events", body, {"Content-Type": "application/json"})[0] == 200
        assert c.post("/v1/metrics", b"x", {"Content-Type": "text/plain"})[0] == 415

        prom, url = _prometheus(tmp_path / "prom", [c.http_port, free_port()])
        for expr in (
            "lastactive_session_runaway == 1",
            "lastactive_session_stuck_seconds",
            'lastactive_sessions{state="idle"} > 0',
            "lastactive_session_runaway_seconds_total > 2",
        ):
            wait_for(lambda e=expr: prom_query(url, e), timeout=60, what=expr)  # type: ignore[misc]
        time.sleep(12)  # rates over [10s] need samples spanning the window

        checks = {(name, title): expr for name, title, expr in targets()}
        assert set(checks) == set(EXPECTED), "every panel needs its expectation"
        wrong = {}
        for key, expr in checks.items():
            result = prom_query(url, substitute(expr))
            if not EXPECTED[key](result):
                wrong[key] = result
        assert not wrong
        runaway = prom_query(url, "increase(lastactive_session_runaway_seconds_total[1h])")
        assert _value(runaway) <= time.monotonic() - started  # never more than it was

        def alerts() -> dict[str, list[dict[str, str]]]:
            with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=10) as r:
                found: dict[str, list[dict[str, str]]] = {}
                for a in json.load(r)["data"]["alerts"]:
                    found.setdefault(a["labels"]["alertname"], []).append(a["labels"])
                return found

        fired = wait_for(
            lambda: (a := alerts()) and {"LastactiveRunawaySession", "LastactiveStuckAgent",
                                         "LastactiveCollectorDown"} <= set(a) and a,
            timeout=60, what="the alerts pending",
        )  # fmt: skip
        assert [a["session_id"] for a in fired["LastactiveRunawaySession"]] == ["spin"]
        assert [(a["session_id"], a["agent"]) for a in fired["LastactiveStuckAgent"]] == [
            ("stuck-1", "codey")
        ]
        assert len(fired["LastactiveCollectorDown"]) == 1  # the second target only
        assert "LastactiveCollectorAbsent" not in fired

        with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as r:
            exposition = r.read()
        checked = subprocess.run(
            [PROMTOOL, "check", "metrics"], input=exposition, capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
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


def _prometheus(
    workdir: Path, ports: list[int], *, rules: bool = True
) -> tuple[subprocess.Popen[bytes], str]:
    """A real Prometheus scraping ``127.0.0.1:{port}`` for each of ``ports`` every second
    (job ``lastactive``, with the shipped alert rules), ready; and its URL."""
    assert PROMETHEUS is not None
    workdir.mkdir()
    config = workdir / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files: ['{DASHBOARDS / 'alerts.yaml'}']\n" if rules else "")
        + "scrape_configs:\n  - job_name: lastactive\n    static_configs:\n"
        f"      - targets: {[f'127.0.0.1:{p}' for p in ports]}\n"
    )
    port = free_port()
    prom = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(url), timeout=60, what="prometheus ready")
    except BaseException:
        stop_process(prom)
        raise
    return prom, url


def _without_instance(result: list[Any]) -> dict[tuple[tuple[str, str], ...], float]:
    """An instant query's result by its labels other than ``instance`` and ``job``."""
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k not in ("instance", "job"))): (
            float(r["value"][1])
        )
        for r in result
    }


@needs_prometheus
def test_the_fleet_board_sums_replicas_as_it_shows_one_process(
    tmp_path: Path, postgres_url: str
) -> None:
    """Issue 13, "the Grafana fleet dashboard sums replicas": one Prometheus scrapes two
    ``lastactive serve`` replicas on PostgreSQL, another a SQLite process; each got the same
    sessions (the replicas half each, whatever their shards). Every fleet panel's query gives
    the same series on both, and the replica panel shows the 64 shards split."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 600\n")
    one = Collector(tmp_path / "one.db", "--policy", str(policy)).start()
    replicas = [
        Collector(tmp_path / f"{name}.db", "--store", postgres_url, "--replica", name,
                  "--lease", "2", "--policy", str(policy)).start()
        for name in ("r1", "r2")
    ]  # fmt: skip
    proms: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(12):  # idle 10 s to 1110 s: away from the histogram's bounds
            for c in (one, replicas[i % 2]):
                last_input(c, f"s{i}", 10 + 100 * i, host=f"h{i % 3}")
        prom, alone = _prometheus(tmp_path / "prom-one", [one.http_port], rules=False)
        proms.append(prom)
        prom, fleet = _prometheus(
            tmp_path / "prom-replicas", [c.http_port for c in replicas], rules=False
        )
        proms.append(prom)
        queries = {
            title: substitute(expr) for name, title, expr in targets() if name == "fleet.json"
        }

        def same() -> dict[str, Any]:
            differ = {}
            for title, expr in queries.items():
                expected = _without_instance(prom_query(alone, expr))
                got = _without_instance(prom_query(fleet, expr))
                if "rate(" in expr:  # a rate depends on when each was scraped: the series
                    expected, got = dict.fromkeys(expected), dict.fromkeys(got)
                if not expected or got != expected:
                    differ[title] = (expected, got)
            return differ

        wait_for(lambda: not same(), 60, "the replicas' fleet series summed equal one's")
        expected_states = _without_instance(
            prom_query(alone, queries["Sessions active, idle, hibernated"])
        )
        assert expected_states == {(("state", "active"),): 1, (("state", "idle"),): 11}
        shards = prom_query(fleet, "sum(lastactive_replica_shards)")
        assert _value(shards) == 64
        assert _value(prom_query(fleet, "max(lastactive_replicas_live)")) == 2
    finally:
        for p in proms:
            stop_process(p)
        for c in (*replicas, one):
            c.stop()


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False
