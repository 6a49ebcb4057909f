"""A real ``lastactive serve`` whose gRPC watcher never reads: the server's memory stays
bounded (its own RSS, hence a separate process) and it keeps serving."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from lastactive.collector._watch import QUEUE_MAX
from lastactive.collector.proto import query_pb2
from tests.helpers import Collector, S, kv, metric, wait_for


def many_sessions(n: int, t: int) -> bytes:
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=t,
            as_double=t / S,
            attributes=kv({"session.id": f"m{i}", "lastactive.source": "input"}),
        )
        for i in range(n)
    ]
    return ExportMetricsServiceRequest(resource_metrics=[metrics_pb2.ResourceMetrics(
        resource={"attributes": kv({"host.id": "many"})},
        scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metrics_pb2.Metric(
            name="lastactive.source.last_time", gauge=metrics_pb2.Gauge(data_points=points))])],
    )]).SerializeToString()  # fmt: skip


def test_server_memory_is_bounded_with_a_subscriber_that_never_reads(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\n")
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    channel, stub = c.grpc_stub()  # closed in finally
    try:
        never_read = stub.Watch(query_pb2.WatchRequest())  # started, never iterated
        wait_for(lambda: metric(c, "lastactive_watch_subscribers") == 1, what="the subscriber")
        assert c.proc is not None
        rss_before = psutil.Process(c.proc.pid).memory_info().rss
        body = many_sessions(20_000, time.time_ns())
        status, _, _ = c.post("/v1/metrics", body, {"Content-Type": "application/x-protobuf"})
        assert status == 200
        # 20,000 sessions appear (active), then all go idle: 40,000 transitions to push.
        wait_for(lambda: metric(c, "lastactive_sessions{state=\"idle\"}") == 20_000,
                 timeout=60, what="all idle")  # fmt: skip
        assert metric(c, "lastactive_watch_resyncs_total") >= 1
        assert metric(c, "lastactive_watch_queued_transitions") <= QUEUE_MAX
        grown = psutil.Process(c.proc.pid).memory_info().rss - rss_before
        assert grown < 150 * 1024 * 1024  # state for 20k sessions, not 40k queued messages x N
        assert c.get("/v1/sessions?limit=1")[0] == 200  # still serving
        never_read.cancel()
    finally:
        channel.close()
        c.stop()
