"""Overload is shed the OTLP way (issue 11): against a collector admitting one export at a
time, the official OpenTelemetry gRPC span exporters are refused with ``UNAVAILABLE`` +
``RetryInfo``, retry, and every export they were told succeeded is in state; queries answer
meanwhile. OTLP/HTTP gets 503 + ``Retry-After``."""

from __future__ import annotations

import threading
import time
import urllib.request

import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.helpers import InProcessCollector

pytestmark = pytest.mark.timeout(120)

EXPORTERS = 8
EXPORTS = 15


def _spans(exporter: int) -> list[list[ReadableSpan]]:
    """``EXPORTS`` batches of spans, one input span per session ``sdk-<exporter>-<n>``."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "overload-test"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("overload")
    batches = []
    for n in range(EXPORTS):
        for k in range(50):  # some work per export, so exports overlap
            with tracer.start_as_current_span(
                "keys",
                attributes={"session.id": f"sdk-{exporter}-{n}-{k}", "lastactive.source": "input"},
            ):
                pass
        batches.append(list(memory.get_finished_spans()))
        memory.clear()
    return batches


def _failed_unavailable(c: InProcessCollector) -> float:
    with urllib.request.urlopen(c.http + "/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("lastactive_otlp_requests_failed_total") and "unavailable" in line
    )


def test_official_exporters_are_shed_retryably_and_lose_nothing() -> None:
    c = InProcessCollector(max_inflight_requests=1).start()
    try:
        batches = [_spans(i) for i in range(EXPORTERS)]
        results: dict[tuple[int, int], SpanExportResult] = {}
        query_times: list[float] = []
        done = threading.Event()

        def export(i: int) -> None:
            exporter = OTLPSpanExporter(endpoint=c.grpc_target, insecure=True, timeout=30)
            for n, batch in enumerate(batches[i]):
                results[(i, n)] = exporter.export(batch)
            exporter.shutdown()

        def query() -> None:
            while not done.is_set():
                began = time.perf_counter()
                assert c.get("/v1/sessions?limit=5")[0] == 200
                query_times.append(time.perf_counter() - began)
                time.sleep(0.05)

        threads = [threading.Thread(target=export, args=(i,)) for i in range(EXPORTERS)]
        querier = threading.Thread(target=query)
        querier.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(100)
        done.set()
        querier.join(10)

        assert _failed_unavailable(c) > 0, "the collector was never saturated"
        ok = [key for key, result in results.items() if result is SpanExportResult.SUCCESS]
        assert len(ok) == EXPORTERS * EXPORTS, "an exporter gave up"
        for i, n in ok:
            for k in (0, 49):
                s = c.session(f"sdk-{i}-{n}-{k}")
                assert s is not None and "input" in s["sources"], (i, n, k)
        assert query_times and max(query_times) < 10
    finally:
        c.stop()


def test_otlp_http_is_refused_with_retry_after_when_full() -> None:
    c = InProcessCollector(max_inflight_requests=1).start()
    try:
        # Hold the one slot: an export whose body never finishes arriving.
        import socket

        slow = socket.create_connection(("127.0.0.1", c.http_port))
        slow.sendall(
            b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        time.sleep(0.3)
        status, body, _ = c.post("/v1/logs", b"{}", {"Content-Type": "application/json"})
        assert status == 503, body
        req = urllib.request.Request(
            c.http + "/v1/logs", data=b"{}", headers={"Content-Type": "application/json"}
        )
        try:
            urllib.request.urlopen(req, timeout=5)
            raise AssertionError("not refused")
        except urllib.error.HTTPError as exc:
            assert exc.code == 503 and exc.headers["Retry-After"] in ("1", "2")  # jittered
            assert b"ingest limit" in exc.read()
        assert c.get("/v1/sessions")[0] == 200  # queries are never shed
        slow.close()
    finally:
        c.stop()
