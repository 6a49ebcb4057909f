"""What acknowledging only committed exports costs: group commit against write-behind.

    python benchmarks/durability.py [--seconds 10] [--clients 16] [--sessions 1000]

Two real ``lastactive serve`` processes on SQLite files, one with the default
``--synchronous-commit true`` (an export is answered once committed), one with ``false`` (the
write-behind of before issue 11: answered on receipt, committed within the flush interval), fed
the same load in the same run:

* *small*: ``--clients`` concurrent gRPC exporters, each sending one session's five points per
  export (a wrapper's periodic export), as fast as answered;
* *batch*: one or four exporters sending ``--sessions`` sessions' points per export (an OTel
  Collector forwarding a fleet; its exporter sends up to 10 in parallel by default).

The exporters (request building included) run in this process; the servers in their own.

Prints exports/s, points/s and latency p50/p99 per mode, and commits (flushes) per second from
the server's ``/metrics`` (group commit: far fewer than exports).
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

S = 1_000_000_000
START = time.time_ns()
SOURCES = ("input", "output", "process")
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_request(prefix: str, sessions: int, n: int) -> bytes:
    """Export ``n`` of ``sessions`` sessions: per session three last-time gauge points and two
    io counter points, stamped now (so no clock correction), values rising with ``n``."""
    t = time.time_ns()
    gauges, sums = [], []
    for i in range(sessions):
        sid = _kv("session.id", f"{prefix}-{i}")
        for src in SOURCES:
            gauges.append(metrics_pb2.NumberDataPoint(
                time_unix_nano=t, as_double=t / S, attributes=[sid, _kv("lastactive.source", src)]
            ))  # fmt: skip
        for direction, rate in (("receive", 10), ("transmit", 1000)):
            sums.append(metrics_pb2.NumberDataPoint(
                time_unix_nano=t, start_time_unix_nano=START, as_int=(n + 1) * rate,
                attributes=[sid, _kv("network.io.direction", direction)],
            ))  # fmt: skip
    metrics = [
        metrics_pb2.Metric(name="lastactive.source.last_time", gauge={"data_points": gauges}),
        metrics_pb2.Metric(name="lastactive.session.io", sum={
            "data_points": sums, "is_monotonic": True, "aggregation_temporality": CUMULATIVE}),
    ]  # fmt: skip
    return ExportMetricsServiceRequest(
        resource_metrics=[{
            "resource": {"attributes": [_kv("host.id", f"{prefix}-host"),
                                        _kv("service.name", "bench")]},
            "scope_metrics": [{"scope": {"name": "lastactive"}, "metrics": metrics}],
        }]
    ).SerializeToString()  # fmt: skip


EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
READY = re.compile(r"on 127\.0\.0\.1:(\d+), OTLP/HTTP and query HTTP on http://127\.0\.0\.1:(\d+)")


def start(db: Path, synchronous: bool) -> tuple[subprocess.Popen[str], int, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "serve", "--grpc-port", "0", "--http-port", "0",
         "--db", str(db), "--synchronous-commit", str(synchronous).lower()],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    match = READY.search(proc.stdout.readline())
    assert match, "the collector did not start"
    return proc, int(match[1]), int(match[2])


def flushes(http_port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics") as r:
        text = r.read().decode()
    match = re.search(r"^lastactive_flushes_total (\S+)", text, re.M)
    return float(match[1]) if match else 0.0


def concurrent(
    port: int, clients: int, sessions: int, seconds: float, prebuilt: int
) -> tuple[list[float], float]:
    """Latencies (s) of every export of ``clients`` concurrent exporters of ``sessions``
    sessions each, one export in flight per client, and the seconds it took. With
    ``prebuilt``, each client builds that many requests first and sends only those (building
    a large request costs the client more than the server takes to apply it)."""
    latencies: list[float] = []
    lock = threading.Lock()
    bodies = [[make_request(f"c{i}", sessions, n) for n in range(prebuilt)] for i in range(clients)]
    deadline = time.monotonic() + seconds

    def client(i: int) -> None:
        mine: list[float] = []
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            export = channel.unary_unary(EXPORT)
            n = 0
            while time.monotonic() < deadline and (not prebuilt or n < prebuilt):
                body = bodies[i][n] if prebuilt else make_request(f"c{i}", sessions, n)
                began = time.perf_counter()
                export(body, timeout=60)
                mine.append(time.perf_counter() - began)
                n += 1
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began_all = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, time.perf_counter() - began_all


def report(name: str, latencies: list[float], seconds: float, points: int, commits: float) -> None:
    q = statistics.quantiles(latencies, n=100)
    n = len(latencies)
    print(
        f"{name:34} {n / seconds:9.0f} {n * points / seconds:10.0f} "
        f"{q[49] * 1000:8.2f} {q[98] * 1000:8.2f} {commits / seconds:9.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--sessions", type=int, default=1000)
    args = ap.parse_args()
    print(
        f"{'load / mode':34} {'exports/s':>9} {'points/s':>10} {'p50 ms':>8} {'p99 ms':>8} "
        f"{'commits/s':>9}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        loads = (
            ("small", args.clients, 1),
            ("batch, 1 in flight", 1, args.sessions),
            ("batch, 4 in flight", 4, args.sessions),
        )
        for k, (load, clients, sessions) in enumerate(loads):
            for synchronous in (False, True):
                mode = "group commit" if synchronous else "write-behind"
                proc, grpc_port, http_port = start(Path(tmp) / f"{k}-{synchronous}.db", synchronous)
                try:
                    before = flushes(http_port)
                    prebuilt = 0 if sessions == 1 else 30
                    lat, took = concurrent(grpc_port, clients, sessions, args.seconds, prebuilt)
                    commits = flushes(http_port) - before
                    report(f"{load}: {mode}", lat, took, 5 * sessions, commits)
                finally:
                    proc.terminate()
                    proc.wait(10)


if __name__ == "__main__":
    main()
