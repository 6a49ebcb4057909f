"""The deployment files as shipped: systemd units that systemd itself accepts, a container
image definition and compose file that say what they should, an OpenTelemetry Collector
configuration that binds to localhost and protects its own memory. (No Docker engine or
OpenTelemetry Collector runs here: those two are checked as files.)"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lastactive._examples import examples

ROOT = Path(__file__).parents[1]
SYSTEMD = ROOT / "packaging" / "systemd"
ANALYZE = shutil.which("systemd-analyze")
LASTACTIVE = shutil.which("lastactive") or str(
    Path(__import__("sys").executable).with_name("lastactive")
)


@pytest.mark.skipif(ANALYZE is None, reason="needs systemd-analyze (.ci/run installs systemd)")
@pytest.mark.parametrize(("unit", "instance"), [
    ("lastactive.service", "lastactive.service"),
    ("lastactive-host@.service", "lastactive-host@collector1.service"),
])  # fmt: skip
def test_systemd_units_pass_systemd_analyze_verify(
    tmp_path: Path, unit: str, instance: str
) -> None:
    """As shipped but for ExecStart's path (to this environment's ``lastactive``); a broken
    ExecStart fails the same check, so it bites."""
    text = (SYSTEMD / unit).read_text()
    for name, program in ((unit, LASTACTIVE), (f"broken-{unit}", "/nonexistent/lastactive")):
        (tmp_path / name).write_text(text.replace("/usr/local/bin/lastactive", program))
    assert ANALYZE is not None
    ok = subprocess.run([ANALYZE, "verify", str(tmp_path / instance)], capture_output=True,
                        text=True, check=False)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    broken = subprocess.run([ANALYZE, "verify", str(tmp_path / f"broken-{instance}")],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert broken.returncode != 0


def test_systemd_units_are_sandboxed() -> None:
    for unit in SYSTEMD.glob("*.service"):
        text = unit.read_text()
        for directive in (
            "DynamicUser=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=",
            "SystemCallFilter=@system-service",
        ):
            assert f"\n{directive}\n" in text, (unit.name, directive)
    serve = (SYSTEMD / "lastactive.service").read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in serve  # credentials and TLS reload
    assert "StateDirectory=lastactive" in serve and "--db /var/lib/lastactive/" in serve


def test_the_image_is_multi_stage_unprivileged_and_health_checked() -> None:
    text = (ROOT / "packaging" / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    assert "COPY --from=build" in text
    (user,) = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.MULTILINE)
    assert re.search(r"^EXPOSE 4317 4318$", text, re.MULTILINE)


def test_compose_provisions_prometheus_and_grafana_from_the_repository() -> None:
    compose_file = ROOT / "packaging" / "compose.yaml"
    compose = yaml.safe_load(compose_file.read_text())
    services = compose["services"]
    assert {"lastactive", "prometheus", "grafana"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)  # never beyond this machine
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (compose_file.parent / source).exists(), (name, source)
    mounts = " ".join(services["grafana"]["volumes"])
    assert "/etc/grafana/provisioning/dashboards" in mounts and "runaway.json" in mounts
    assert "alerts.yaml" in " ".join(services["prometheus"]["volumes"])
    scrape = yaml.safe_load((ROOT / "packaging" / "compose" / "prometheus.yml").read_text())
    assert scrape["scrape_configs"][0]["job_name"] == "lastactive"  # what the alerts expect


def test_the_collector_config_binds_localhost_and_limits_its_memory() -> None:
    config = yaml.safe_load((ROOT / "otel-config.yaml").read_text())
    for protocol in config["receivers"]["otlp"]["protocols"].values():
        assert protocol["endpoint"].startswith("127.0.0.1:")
    assert config["exporters"]["otlp/lastactive"]["endpoint"] == "${env:LASTACTIVE_OTLP_ENDPOINT}"
    for name, pipeline in config["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name


def test_the_package_carries_every_deployment_file() -> None:
    carried = examples()
    for name in ("dashboards/alerts.yaml", "dashboards/runaway.json", "otel-config.yaml",
                 "packaging/Dockerfile", "packaging/systemd/lastactive.service",
                 "packaging/haproxy/haproxy.cfg"):  # fmt: skip
        assert carried[name] == (ROOT / name).read_bytes()


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus")
def test_the_readmes_loopback_prometheus_recipe_is_a_valid_config(tmp_path: Path) -> None:
    """README, "Dashboards": the shipped scrape config without TLS and token, by the README's
    own sed, is a configuration Prometheus accepts, with the alert rules beside it."""
    for name, content in examples().items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    config = tmp_path / "dashboards" / "prometheus.yml"
    subprocess.run(["sed", "-i", "/scheme: https/,/ca_file/d", str(config)], check=True)
    assert "https" not in config.read_text()
    done = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and "5 rules found" in done.stdout, done.stdout + done.stderr
