"""OTLP receivers against a real ``lastactive serve``: official SDK exporters, OTLP/JSON, counter
semantics, and bad input (status, message, and state left intact)."""

from __future__ import annotations

import gzip
import json
import time
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.rpc import status_pb2
from grpc import Compression
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from lastactive.collector._http._query import MODELS_SLICE, EntityOut, SessionList, sessions_body
from lastactive.collector._state import ActivityState, Identity
from lastactive.collector.policy import Policy
from lastactive.collector.proto import query_pb2
from tests.helpers import (
    Collector,
    CollectorClient,
    InProcessCollector,
    S,
    last_input,
    metrics_request,
    otlp_json,
    slices_of,
    sum_point,
)

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def sdk_counter(exporter: Any, session_id: str) -> tuple[MeterProvider, Any]:
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader],
        resource=Resource.create({"session.id": session_id, "host.id": "sdk-host"}),
    )
    counter = provider.get_meter("test").create_counter("keys.typed")
    return provider, counter


@pytest.mark.parametrize("transport", ["grpc", "grpc-gzip", "http"])
def test_sdk_metric_exporter_moves_state_and_unchanged_counter_does_not(
    collector: CollectorClient, transport: str
) -> None:
    if transport.startswith("grpc"):
        compression = Compression.Gzip if transport == "grpc-gzip" else None
        exporter: Any = GrpcMetricExporter(
            endpoint=collector.grpc_target, insecure=True, compression=compression
        )
    else:
        exporter = HttpMetricExporter(endpoint=f"{collector.http}/v1/metrics")
    sid = f"sdk-{transport}"
    provider, counter = sdk_counter(exporter, sid)
    try:
        counter.add(3, {"lastactive.source": "input"})
        assert provider.force_flush()
        first = collector.session(sid)
        assert first is not None
        assert first["last_active"] is not None  # stream began after the collector: counts
        assert first["host_id"] == "sdk-host"

        time.sleep(0.01)
        assert provider.force_flush()  # same cumulative value again: arrival, not activity
        same = collector.session(sid)
        assert same is not None
        assert same["last_active"] == first["last_active"]
        assert same["last_seen"] > first["last_seen"]

        counter.add(1, {"lastactive.source": "input"})
        assert provider.force_flush()
        rose = collector.session(sid)
        assert rose is not None and rose["last_active"] > first["last_active"]
        assert rose["last_source"] == "input"
    finally:
        provider.shutdown()


def test_an_sdk_app_reporting_only_bytes_is_not_idle(collector: CollectorClient) -> None:
    """Issue 10 (6): the official SDK's counter of ``lastactive.session.io`` alone: a rise of
    ``transmit`` is output (work), of ``receive`` input (engagement)."""
    exporter = GrpcMetricExporter(endpoint=collector.grpc_target, insecure=True)
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
    provider = MeterProvider(
        metric_readers=[reader], resource=Resource.create({"session.id": "bytes-only"})
    )
    io = provider.get_meter("app").create_counter("lastactive.session.io", unit="By")
    try:
        io.add(4096, {"network.io.direction": "transmit"})
        assert provider.force_flush()
        s = collector.session("bytes-only")
        assert s is not None and s["last_source"] == "output" and s["output_bytes"] == 4096
        assert s["last_active"] is None
        io.add(12, {"network.io.direction": "receive"})
        assert provider.force_flush()
        s = collector.session("bytes-only")
        assert s is not None and s["last_source"] == "input" and s["last_active"] is not None
    finally:
        provider.shutdown()


def test_sdk_log_and_span_exporters(collector: CollectorClient) -> None:
    resource = Resource.create({"session.id": "sdk-events", "host.id": "sdk-host"})
    logs = LoggerProvider(resource=resource)
    logs.add_log_record_processor(
        SimpleLogRecordProcessor(OTLPLogExporter(endpoint=collector.grpc_target, insecure=True))
    )
    logs.get_logger("test").emit(
        event_name="lastactive.activity", attributes={"lastactive.source": "prompt"}
    )
    logs.shutdown()
    s = collector.session("sdk-events")
    assert s is not None and s["last_source"] == "prompt" and s["last_active"] is not None

    traces = TracerProvider(resource=Resource.create({"session.id": "sdk-span"}))
    traces.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(f"{collector.http}/v1/traces")))
    with traces.get_tracer("test").start_as_current_span("request"):
        pass
    traces.shutdown()
    s = collector.session("sdk-span")
    assert s is not None
    assert "telemetry" in s["sources"]  # a foreign span with an identity: liveness
    assert s["last_activity"] is None and s["last_active"] is None


def test_hand_written_otlp_json_with_gzip(collector: CollectorClient) -> None:
    t = time.time_ns() - 5 * S
    body = gzip.compress(json.dumps(otlp_json("json-1", t)).encode())
    status, resp, ctype = collector.post("/v1/traces", body, {**JSON, "Content-Encoding": "gzip"})
    assert status == 200, resp
    assert ctype.startswith("application/json")
    assert json.loads(resp) == {}  # no partial success: everything accepted
    s = collector.session("json-1")
    assert s is not None
    assert s["host_id"] == "json-host"
    assert s["last_source"] == "input"
    got = s["sources"]["input"]
    assert got.startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t / S)))


def test_counter_replay_and_reordering_never_move_backwards(collector: CollectorClient) -> None:
    base = time.time_ns() - 100 * S
    start = base - 10 * S

    def send(value: int, t: int) -> None:
        req = metrics_request(
            "ctr", sums={"keys": [sum_point(value, t, start, **{"lastactive.source": "input"})]}
        )
        status, resp, _ = collector.post("/v1/metrics", req.SerializeToString(), PROTO)
        assert status == 200, resp

    send(10, base)  # baseline (history before the collector started is unknown)
    assert collector.session("ctr")["last_active"] is None  # type: ignore[index]
    send(10, base + 5 * S)  # unchanged
    assert collector.session("ctr")["last_active"] is None  # type: ignore[index]
    send(12, base + 10 * S)  # rose: activity at that point's time
    after_rise = collector.session("ctr")
    assert after_rise is not None and after_rise["last_active"] is not None
    send(11, base + 7 * S)  # older point replayed late: dropped
    send(10, base + 5 * S)  # the whole first batch replayed: dropped
    replayed = collector.session("ctr")
    assert replayed is not None
    for key in ("last_active", "last_seen", "sources", "first_seen"):
        assert replayed[key] == after_rise[key], key
    send(2, base + 20 * S)  # lower value: a reset, counts as new activity
    reset = collector.session("ctr")
    assert reset is not None and reset["last_active"] > after_rise["last_active"]


def test_future_timestamps_are_clamped_to_receive_time(collector: CollectorClient) -> None:
    far = time.time_ns() + 3600 * S
    req = metrics_request(
        "future",
        gauges={
            "lastactive.source.last_time": [sum_point(0, far, 0, **{"lastactive.source": "input"})]
        },
    )
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = far / S
    before = time.time()
    status, _, _ = collector.post("/v1/metrics", req.SerializeToString(), PROTO)
    assert status == 200
    s = collector.session("future")
    assert s is not None
    # Not an hour ahead: at most the receive time (plus this test's own slack).
    assert s["idle_seconds"] >= 0
    assert s["last_active"] < time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(before + 60))


def seed_state(collector: CollectorClient) -> dict[str, Any]:
    t = time.time_ns() - 50 * S
    req = metrics_request(
        "keep",
        gauges={
            "lastactive.source.last_time": [sum_point(0, t, 0, **{"lastactive.source": "prompt"})]
        },
    )
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S
    status, _, _ = collector.post("/v1/metrics", req.SerializeToString(), PROTO)
    assert status == 200
    s = collector.session("keep")
    assert s is not None and s["last_active"] is not None
    return s


def assert_intact(collector: CollectorClient, before: dict[str, Any]) -> None:
    after = collector.session("keep")
    assert after is not None
    for key in ("last_active", "last_seen", "first_seen", "sources", "output_bytes"):
        assert after[key] == before[key], key


def status_message(body: bytes, ctype: str) -> str:
    if ctype.startswith("application/json"):
        return str(json.loads(body)["message"])
    return str(status_pb2.Status.FromString(body).message)


@pytest.mark.parametrize(
    ("body", "headers", "status", "says"),
    [
        (b"\xff\xff\xff garbage", PROTO, 400, "undecodable protobuf"),
        (b"{not json", JSON, 400, "invalid JSON"),
        (b"[1, 2]", JSON, 400, "must be a JSON object"),
        (b'{"resourceMetrics": 7}', JSON, 400, "invalid OTLP/JSON"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
            JSON,
            400,
            "not a hex string",
        ),
        (b"{}", {"Content-Type": "text/plain"}, 415, "unsupported Content-Type"),
        (b"{}", {**JSON, "Content-Encoding": "br"}, 415, "unsupported Content-Encoding"),
        (b"not gzip at all", {**JSON, "Content-Encoding": "gzip"}, 400, "corrupt gzip"),
        (gzip.compress(b"{}")[:-6], {**JSON, "Content-Encoding": "gzip"}, 400, "corrupt gzip"),
    ],
)
def test_bad_http_input_is_refused_and_state_is_intact(
    collector: CollectorClient, body: bytes, headers: dict[str, str], status: int, says: str
) -> None:
    before = seed_state(collector)
    path = "/v1/traces" if b"resourceSpans" in body else "/v1/metrics"
    got, resp, ctype = collector.post(path, body, headers)
    assert got == status
    assert says in status_message(resp, ctype)
    assert_intact(collector, before)


def test_invalid_points_are_rejected_through_partial_success(collector: CollectorClient) -> None:
    t = time.time_ns() - 10 * S
    req = metrics_request(
        "partial",
        gauges={
            "lastactive.source.last_time": [
                sum_point(0, t, 0, **{"lastactive.source": "output"}),
                sum_point(0, t, 0, **{"lastactive.source": "telepathy"}),
                sum_point(0, t, 0, **{"lastactive.source": "input"}),
            ]
        },
    )
    points = req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points
    points[0].as_double = t / S
    points[1].as_double = t / S
    points[2].as_double = float("nan")
    bodies = (
        (req.SerializeToString(), PROTO),
        (json_format.MessageToJson(req).encode(), JSON),
    )
    for body, headers in bodies:
        status, resp, ctype = collector.post("/v1/metrics", body, headers)
        assert status == 200
        if ctype.startswith("application/json"):
            partial = json.loads(resp)["partialSuccess"]
            assert int(partial["rejectedDataPoints"]) == 2
            assert "telepathy" in partial["errorMessage"]
        else:
            partial_pb = ExportMetricsServiceResponse.FromString(resp).partial_success
            assert partial_pb.rejected_data_points == 2
            assert "telepathy" in partial_pb.error_message
    s = collector.session("partial")
    assert s is not None
    assert set(s["sources"]) == {"output"}  # the valid point was kept


def test_size_limit_http_and_grpc(tmp_path: Any) -> None:
    c = Collector(tmp_path / "small.db", "--max-request-bytes", "2000").start()
    try:
        before = seed_state(c)
        big = b"x" * 5000
        status, resp, ctype = c.post("/v1/metrics", big, PROTO)
        assert status == 413 and "limit" in status_message(resp, ctype)
        bomb = gzip.compress(b" " * 100_000)  # small on the wire, too big inflated
        assert len(bomb) < 2000
        status, resp, ctype = c.post("/v1/metrics", bomb, {**JSON, "Content-Encoding": "gzip"})
        assert status == 413 and "exceeds" in status_message(resp, ctype)

        with grpc.insecure_channel(c.grpc_target) as channel:
            export = channel.unary_unary(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
            )
            with pytest.raises(grpc.RpcError) as err:
                export(big, timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert_intact(c, before)
    finally:
        c.stop()


def test_bad_grpc_input_and_not_found(collector: CollectorClient) -> None:
    before = seed_state(collector)
    with grpc.insecure_channel(collector.grpc_target) as channel:
        export = channel.unary_unary(
            "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
        )
        with pytest.raises(grpc.RpcError) as err:
            export(b"\xff\xff\xff garbage", timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "undecodable" in (err.value.details() or "")

        channel_, stub = collector.grpc_stub()
        with channel_:
            with pytest.raises(grpc.RpcError) as err:
                stub.GetSession(query_pb2.GetRequest(id="nope"), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            with pytest.raises(grpc.RpcError) as err:
                stub.GetHost(query_pb2.GetRequest(id="nope"), timeout=10)
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
            listed = stub.ListSessions(query_pb2.ListSessionsRequest(), timeout=10)
            assert [s.id for s in listed.sessions] == ["keep"]

        reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
        (answer,) = reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10
        )
        listed_services = {s.name for s in answer.list_services_response.service}
        assert {"lastactive.v1.ActivityQuery", "grpc.health.v1.Health"} <= listed_services

        health = health_pb2_grpc.HealthStub(channel)
        for service in (
            "",
            "lastactive.v1.ActivityQuery",
            "opentelemetry.proto.collector.metrics.v1.MetricsService",
        ):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
    assert collector.get("/v1/sessions/nope")[0] == 404
    assert collector.get("/v1/hosts/nope")[0] == 404
    assert_intact(collector, before)


def test_a_sessions_page_is_encoded_a_slice_at_a_time() -> None:
    """Twice a slice and one, an id JSON must escape, a token: the body is SessionList's own
    JSON byte for byte, made :data:`MODELS_SLICE` sessions a slice (issue 15: a page of 10,000
    held the event loop ~340 ms in one piece)."""
    now = 1_800_000_000 * 1_000_000_000
    state, policy = ActivityState(), Policy()
    ids = [f"s{i:04d}" for i in range(2 * MODELS_SLICE)] + ['é"\\\u2028/x']
    for i, sid in enumerate(ids):
        ents = state.resolve(Identity(session_id=sid, host_id="h"), now)
        state.activity(ents, "input", now - i * 1_000_000_000)
    views = state.sessions(now, None, len(ids))
    slices, body = slices_of(sessions_body(views, lambda v: policy.evaluate(v, now), "tokén"))
    assert slices == 3
    evaluated = [EntityOut.of(v, policy.evaluate(v, now)) for v in views]
    assert (
        body == SessionList(sessions=evaluated, next_page_token="tokén").model_dump_json().encode()
    )
    assert [s["id"] for s in json.loads(body)["sessions"]] == ids


def test_sessions_come_a_page_at_a_time_over_http_and_grpc(collector: InProcessCollector) -> None:
    for i in range(7):
        last_input(collector, f"page-{i}", 100 - i)  # page-6 is the most recent
    want = [f"page-{i}" for i in range(6, -1, -1)]
    got, token = [], ""
    while True:
        status, body = collector.get(f"/v1/sessions?limit=3&page_token={token}")
        assert status == 200 and len(body["sessions"]) <= 3
        got += [s["id"] for s in body["sessions"]]
        token = body["next_page_token"]
        if not token:
            break
    assert got == want
    channel, stub = collector.grpc_stub()
    with channel:
        got, token = [], ""
        while True:
            page = stub.ListSessions(query_pb2.ListSessionsRequest(limit=2, page_token=token))
            got += [s.id for s in page.sessions]
            token = page.next_page_token
            if not token:
                break
        assert got == want
        with pytest.raises(grpc.RpcError) as exc:
            stub.ListSessions(query_pb2.ListSessionsRequest(page_token="bogus"))
        assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert collector.get("/v1/sessions?page_token=bogus")[0] == 400
    # Reporters too (each session's exports here are a reporter of their own).
    status, whole = collector.get("/v1/reporters")
    assert status == 200 and whole["next_page_token"] == "" and len(whole["reporters"]) >= 7
    got, token = [], ""
    while True:
        status, body = collector.get(f"/v1/reporters?limit=3&page_token={token}")
        assert status == 200 and len(body["reporters"]) <= 3
        got += body["reporters"]
        token = body["next_page_token"]
        if not token:
            break
    assert got == whole["reporters"]
    assert collector.get("/v1/reporters?page_token=bogus")[0] == 400
