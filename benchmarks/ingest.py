"""OTLP ingest rate into state: data points/s in-process, over gRPC and over OTLP/HTTP.

    python benchmarks/ingest.py [--batches 40] [--sessions 1000]

Each request is what 1000 sessions' reporters send at one export (``--sessions``): per session
three ``lastactive.source.last_time`` gauge points and two ``lastactive.session.io`` counter
points, values and times rising from batch to batch so every point takes the full path (no
stale drops). Requests are serialized before timing. The in-process figure (protobuf parse +
walk into state, one core) is the baseline the two transports are compared with, in one run.
ANCHORS for scale: parse+walk ~470-700k points/s; the Go Collector ~270k points/s per core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
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

from lastactive.collector import ActivityState, Ingest, Settings, serve

S = 1_000_000_000
SOURCES = ("input", "output", "process")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_request(sessions: int, batch: int, t0: int) -> ExportMetricsServiceRequest:
    t = t0 + batch * 5 * S
    gauge_points, io_points = [], []
    for i in range(sessions):
        sid = _kv("session.id", f"bench-{i}")
        for src in SOURCES:
            gauge_points.append(
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t,
                    as_double=t / S - 1,
                    attributes=[sid, _kv("lastactive.source", src)],
                )
            )
        for direction, rate in (("receive", 10), ("transmit", 1000)):
            io_points.append(
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t,
                    start_time_unix_nano=t0,
                    as_int=(batch + 1) * rate,
                    attributes=[sid, _kv("network.io.direction", direction)],
                )
            )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={
                    "attributes": [_kv("host.id", "bench-host"), _kv("service.name", "bench")]
                },
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(
                        scope={"name": "lastactive"},
                        metrics=[
                            metrics_pb2.Metric(
                                name="lastactive.source.last_time",
                                gauge=metrics_pb2.Gauge(data_points=gauge_points),
                            ),
                            metrics_pb2.Metric(
                                name="lastactive.session.io",
                                sum=metrics_pb2.Sum(
                                    data_points=io_points,
                                    is_monotonic=True,
                                    aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
                                ),
                            ),
                        ],
                    )
                ],
            )
        ]
    )


def in_process(bodies: list[bytes], t0: int) -> float:
    state = ActivityState(started_at=t0 - S)
    ingest = Ingest(state)
    began = time.perf_counter()
    for body in bodies:
        ingest.metrics(ExportMetricsServiceRequest.FromString(body))
    return time.perf_counter() - began


def over_grpc(bodies: list[bytes], port: int) -> float:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        )
        export(bodies[0], timeout=60)  # connect outside the timing
        began = time.perf_counter()
        for body in bodies[1:]:
            export(body, timeout=60)
        return time.perf_counter() - began


def over_http(bodies: list[bytes], port: int) -> float:
    url = f"http://127.0.0.1:{port}/v1/metrics"
    headers = {"Content-Type": "application/x-protobuf"}
    began = time.perf_counter()
    for body in bodies:
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=60) as r:
            r.read()
    return time.perf_counter() - began


def start_server(db: Path) -> tuple[int, int, asyncio.AbstractEventLoop, asyncio.Event]:
    """The real collector (gRPC + HTTP + SQLite write-behind) on a thread of this process."""
    ports: dict[str, int] = {}
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    holder: dict[str, asyncio.Event] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        stop = asyncio.Event()
        holder["stop"] = stop

        def on_ready(bound: object) -> None:
            ports["grpc"], ports["http"] = bound.grpc_port, bound.http_port  # type: ignore[attr-defined]
            ready.set()

        settings = Settings(grpc_port=0, http_port=0, db=db)
        loop.run_until_complete(serve(settings, ready=on_ready, stop=stop))

    threading.Thread(target=run, daemon=True).start()
    ready.wait(30)
    return ports["grpc"], ports["http"], loop, holder["stop"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--sessions", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.time_ns() - 3600 * S
    points_per = args.sessions * (len(SOURCES) + 2)
    # Separate request sets so each target sees rising values from its first batch.
    sets = [
        [make_request(args.sessions, b, t0 + k).SerializeToString() for b in range(args.batches)]
        for k in range(3)
    ]
    size = len(sets[0][0])
    print(
        f"{args.batches} requests x {points_per} points ({args.sessions} sessions), "
        f"{size / 1024:.0f} KiB each",
        file=sys.stderr,
    )

    base = in_process(sets[0], t0)
    with tempfile.TemporaryDirectory() as tmp:
        grpc_port, http_port, loop, stop = start_server(Path(tmp) / "bench.db")
        # The servers run on a thread of this process: client and server share the GIL, as a
        # collector and a busy co-located client would not; see the subprocess note below.
        g = over_grpc(sets[1], grpc_port) / (args.batches - 1) * args.batches
        h = over_http(sets[2], http_port)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/sessions?limit=1") as r:
            assert json.load(r)["sessions"], "state was not populated"
        loop.call_soon_threadsafe(stop.set)
    total = points_per * args.batches
    rows = [
        ("in-process parse + walk (baseline)", base),
        ("OTLP/gRPC, one request in flight", g),
        ("OTLP/HTTP protobuf, one in flight", h),
    ]
    print(f"{'path':38} {'points/s':>10} {'x baseline':>11}")
    for name, secs in rows:
        print(f"{name:38} {total / secs:10.0f} {base / secs:11.2f}")


if __name__ == "__main__":
    main()
