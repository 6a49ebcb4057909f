"""HAProxy with the shipped configuration (``packaging/haproxy/haproxy.cfg``) in front of three
``lastactive serve`` replicas on one real PostgreSQL (issue 13): real reporters (SDK exporters
over OTLP/gRPC and OTLP/HTTP, ``lastactive run``, ``lastactive hook claude``) through the
balancer; each host's exports land on one replica (the replicas' own counts say which); a replica
is SIGKILLed, its hosts move to the others, and nothing acknowledged is lost: byte counters
continue where the dead replica's last commit left them."""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from lastactive.conventions import PROM_OTLP_REQUESTS, Source
from lastactive.instrumentation import Reporter
from tests.helpers import Collector, CollectorClient, free_port, listening, stop_process, wait_for

CONFIG = Path(__file__).parents[2] / "packaging" / "haproxy" / "haproxy.cfg"
HOOKS = Path(__file__).parents[1] / "fixtures" / "claude_hooks"
HOSTS = [f"lb-host-{i}" for i in range(6)]


class Balancer(CollectorClient):
    """HAProxy on loopback with the shipped configuration, in front of ``replicas``."""

    def __init__(self, replicas: list[Collector]) -> None:
        self.grpc_port, self.http_port, self.stats_port = free_port(), free_port(), free_port()
        env = {**os.environ, "LB_ADDR": "127.0.0.1", "LB_GRPC_PORT": str(self.grpc_port),
               "LB_HTTP_PORT": str(self.http_port),
               "LB_STATS_PORT": str(self.stats_port)}  # fmt: skip
        for n, r in enumerate(replicas, 1):
            env |= {f"REPLICA{n}_ADDR": "127.0.0.1", f"REPLICA{n}_GRPC_PORT": str(r.grpc_port),
                    f"REPLICA{n}_HTTP_PORT": str(r.http_port)}  # fmt: skip
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(haproxy).exists():  # .ci/run installs it
            if os.environ.get("CI"):
                pytest.fail("HAProxy is not installed")
            pytest.skip("HAProxy is not installed")
        self.proc = subprocess.Popen([haproxy, "-f", str(CONFIG), "-db"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        wait_for(lambda: self.proc.poll() is not None or listening(self.stats_port), 10, "HAProxy")
        if self.proc.poll() is not None:
            raise AssertionError(f"HAProxy did not start: {self.proc.stderr.read()!r}")  # type: ignore[union-attr]

    def servers(self) -> dict[tuple[str, str], dict[str, str]]:
        """``(backend, server)`` -> its row of HAProxy's statistics (``req_tot``, ``status``)."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as resp:
            text = resp.read().decode().lstrip("# ")
        rows = csv.DictReader(io.StringIO(text))
        return {(r["pxname"], r["svname"]): r for r in rows if r["svname"].startswith("r")}

    def up(self) -> set[str]:
        """The replicas HAProxy sends to, in both backends."""
        rows = self.servers().items()
        return {s for _, s in self.servers()} - {s for (_, s), r in rows if r["status"] != "UP"}


@pytest.fixture
def replicas(postgres_url: str, tmp_path: Path) -> Iterator[list[Collector]]:
    started = [
        Collector(tmp_path / "unused.db", "--store", postgres_url, "--replica", f"r{n}",
                  "--lease", "2").start()
        for n in (1, 2, 3)
    ]  # fmt: skip
    yield started
    for c in started:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()


def _answered(replicas: list[Collector]) -> dict[str, int]:
    """Live replica (``r1`` ...) -> OTLP export requests it has answered (its own
    ``lastactive_otlp_requests_total``, counted before it answers; HAProxy's ``req_tot`` lags an
    HTTP/2 stream's end, so it can miss an export the reporter already saw answered)."""
    counts = {}
    for n, r in enumerate(replicas, 1):
        if r.proc is None or r.proc.poll() is not None:
            continue
        with urllib.request.urlopen(f"{r.http}/metrics", timeout=10) as resp:
            families = text_string_to_metric_families(resp.read().decode())
            counts[f"r{n}"] = sum(int(s.value) for f in families if f.name == PROM_OTLP_REQUESTS
                                  for s in f.samples if s.name.endswith("_total"))  # fmt: skip
    return counts


def _sent(replicas: list[Collector], before: dict[str, int]) -> set[str]:
    """The replicas that answered exports since ``before`` (:func:`_answered`)."""
    return {r for r, n in _answered(replicas).items() if n > before.get(r, 0)}


def _reporter(lb: Balancer, host: str, protocol: str) -> Reporter:
    os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol  # read when the exporters are made
    try:
        port = lb.grpc_port if protocol == "grpc" else lb.http_port
        return Reporter(host_id=host, endpoint=f"http://127.0.0.1:{port}", export_interval=3600)
    finally:
        del os.environ["OTEL_EXPORTER_OTLP_PROTOCOL"]


def test_a_hosts_exports_land_on_one_replica_and_move_when_it_dies(
    replicas: list[Collector], lastactive_env: dict[str, str]
) -> None:
    lb = Balancer(replicas)
    reporters: list[Reporter] = []
    try:
        wait_for(lambda: lb.up() == {"r1", "r2", "r3"}, 15, "every replica up at HAProxy")
        reporters = [_reporter(lb, h, "grpc" if i % 2 else "http/protobuf")
                     for i, h in enumerate(HOSTS)]  # fmt: skip
        landed: dict[str, str] = {}
        for host, reporter in zip(HOSTS, reporters, strict=True):
            before = _answered(replicas)
            for sid in (f"{host}-a", f"{host}-b"):
                tracker = reporter.session(sid)
                tracker.record(Source.INPUT)
                tracker.add_input(100)
            reporter.flush()
            sent = _sent(replicas, before)
            assert len(sent) == 1, f"{host}'s exports went to {sent}"  # one replica
            (landed[host],) = sent
        assert len(set(landed.values())) > 1, landed  # the hosts are spread

        # The other reporters, through the balancer too.
        run = subprocess.run(
            [sys.executable, "-m", "lastactive", "run", "--session-id", "lb-run", "--endpoint",
             f"http://{lb.grpc_target}", "--", "sh", "-c", "echo hello"],
            env=lastactive_env, capture_output=True, timeout=30, check=True,
        )  # fmt: skip
        assert run.stdout.strip() == b"hello"  # relayed through its PTY
        payload = (HOOKS / "UserPromptSubmit.json").read_text().replace("SESSION", "lb-claude")
        hook = [sys.executable, "-m", "lastactive", "hook", "claude", "--url", lb.http]
        subprocess.run(hook, input=payload.encode(), env=lastactive_env, timeout=10, check=True)
        for sid in ("lb-run", "lb-claude"):
            wait_for(lambda sid=sid: lb.session(sid), 10, f"{sid} through the balancer")
        assert wait_for(lambda: (s := lb.session("lb-run")) and s["process"]["exit_code"] == 0)

        # The replica holding HOSTS[0] dies: its hosts go to the others; the bytes it committed
        # before acknowledging stay, and the counters continue from them (a cumulative counter
        # now reaching another replica: each byte counted once).
        victim = replicas[int(landed[HOSTS[0]][1]) - 1]
        assert victim.proc is not None
        victim.proc.kill()
        victim.proc.wait(10)
        wait_for(lambda: landed[HOSTS[0]] not in lb.up(), 15, "HAProxy sees the replica down")
        for host, reporter in zip(HOSTS, reporters, strict=True):
            before = _answered(replicas)
            for sid in (f"{host}-a", f"{host}-b"):
                reporter.session(sid).add_input(50)
            reporter.flush()
            sent = _sent(replicas, before)
            assert len(sent) == 1, f"{host}'s exports went to {sent}"
            (now_at,) = sent
            assert now_at != landed[HOSTS[0]]
            if landed[host] != landed[HOSTS[0]]:
                assert now_at == landed[host], f"{host} moved though its replica lives"
        for host in HOSTS:
            for sid in (f"{host}-a", f"{host}-b"):
                wait_for(lambda sid=sid: (s := lb.session(sid)) and s["input_bytes"] == 150, 10,
                         f"{sid}: 100 bytes before the kill and 50 after, each once")  # fmt: skip
                assert "input" in lb.session(sid)["sources"]  # type: ignore[index]
    finally:
        for r in reporters:
            r.shutdown()
        stop_process(lb.proc)  # type: ignore[arg-type]
