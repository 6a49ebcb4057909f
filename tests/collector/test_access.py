"""Credentials on every endpoint of both ports (real servers in this process, an auth file):
no credential is 401 / UNAUTHENTICATED, the wrong scope 403 / PERMISSION_DENIED, the right one
OK; a bound reporter's telemetry about another host is rejected and counted."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.logs.v1 import logs_pb2

from lastactive.collector._auth import Scope, create_credential
from lastactive.collector.proto import query_pb2, query_pb2_grpc
from tests.helpers import InProcessCollector, S, kv, metrics_request, sum_point

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}
NOW = 1_800_000_000 * S


class Tokens:
    report: str
    read: str
    act: str
    host_a: str


Secured = tuple[InProcessCollector, Tokens]


@pytest.fixture(scope="module")
def secured(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Secured]:
    path = tmp_path_factory.mktemp("auth") / "auth.json"
    tokens = Tokens()
    grants = [("report", [Scope.REPORT], None), ("read", [Scope.READ], None),
              ("act", [Scope.ACT], None), ("host_a", [Scope.REPORT], "host-a")]  # fmt: skip
    for name, scopes, host in grants:
        _, token = create_credential(path, scopes, name=name, host=host)
        assert token is not None
        setattr(tokens, name, token)
    c = InProcessCollector(auth_file=path, clock=lambda: NOW).start()
    status, _ = _http(c, "POST", "/v1/metrics", tokens.report, _input("s", "host-b"), PROTO)
    assert status == 200
    yield c, tokens
    c.stop()


def _input(sid: str, host: str) -> bytes:
    t = NOW
    req = metrics_request(sid, host_id=host, gauges={"lastactive.source.last_time": [
        sum_point(0, t, 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S - 1
    return bytes(req.SerializeToString())


def _hibernate(sid: str) -> logs_service_pb2.ExportLogsServiceRequest:
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": kv({"session.id": sid})},
        scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(
            event_name="lastactive.activity", time_unix_nano=1_800_000_000 * S,
            attributes=kv({"lastactive.source": "hibernate"}))])])])  # fmt: skip


def _http(
    c: InProcessCollector,
    method: str,
    path: str,
    token: str | None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(c.http + path, data=body, headers=h, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            if r.headers.get("content-type", "").startswith("text/event-stream"):
                return r.status, r.readline()  # the first line of the stream, then close
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, (exc.headers.get("WWW-Authenticate"), exc.read())


REPORT_HTTP = [
    ("/v1/metrics", _input("s", "host-b"), PROTO),
    ("/v1/traces", trace_service_pb2.ExportTraceServiceRequest().SerializeToString(), PROTO),
    ("/v1/logs", logs_service_pb2.ExportLogsServiceRequest().SerializeToString(), PROTO),
    ("/v1/agent-events", json.dumps({"action": "spawn", "sessionKey": "w"}).encode(), JSON),
]
READ_HTTP = ["/v1/sessions", "/v1/sessions/s", "/v1/hosts/host-b", "/v1/reporters",
             "/v1/decisions", "/v1/watch", "/metrics"]  # fmt: skip


@pytest.mark.parametrize(("path", "body", "headers"), REPORT_HTTP)
def test_http_report_endpoints(
    secured: Secured, path: str, body: bytes, headers: dict[str, str]
) -> None:
    c, t = secured
    status, (challenge, _) = _http(c, "POST", path, None, body, headers)
    assert (status, challenge) == (401, "Bearer")
    assert _http(c, "POST", path, "la_000000000000_forged", body, headers)[0] == 401
    assert _http(c, "POST", path, t.read, body, headers)[0] == 403
    assert _http(c, "POST", path, t.report, body, headers)[0] == 200


@pytest.mark.parametrize("path", READ_HTTP)
def test_http_read_endpoints(secured: Secured, path: str) -> None:
    c, t = secured
    status, (challenge, body) = _http(c, "GET", path, None)
    assert (status, challenge) == (401, "Bearer") and b"credentials required" in body
    status, (_, body) = _http(c, "GET", path, t.report)
    assert status == 403 and b"needs read" in body
    assert _http(c, "GET", path, t.read)[0] == 200


def test_http_hibernation_records_need_act(secured: Secured) -> None:
    c, t = secured
    body = _hibernate("s").SerializeToString()
    assert _http(c, "POST", "/v1/logs", None, body, PROTO)[0] == 401
    assert _http(c, "POST", "/v1/logs", t.read, body, PROTO)[0] == 403
    status, raw = _http(c, "POST", "/v1/logs", t.report, body, PROTO)
    out = logs_service_pb2.ExportLogsServiceResponse.FromString(raw)
    assert status == 200 and out.partial_success.rejected_log_records == 1
    assert "scope act" in out.partial_success.error_message
    status, raw = _http(c, "POST", "/v1/logs", t.act, body, PROTO)
    out = logs_service_pb2.ExportLogsServiceResponse.FromString(raw)
    assert status == 200 and out.partial_success.rejected_log_records == 0
    assert _http(c, "POST", "/v1/metrics", t.act, _input("s", "host-b"), PROTO)[0] == 403


def test_a_bound_reporter_cannot_forge_another_host(
    secured: Secured,
) -> None:
    c, t = secured
    before = json.loads(_http(c, "GET", "/v1/sessions/s", t.read)[1])
    status, raw = _http(c, "POST", "/v1/metrics", t.host_a, _input("s", "host-b"), PROTO)
    out = metrics_service_pb2.ExportMetricsServiceResponse.FromString(raw)
    assert status == 200 and out.partial_success.rejected_data_points == 1
    assert "host-a" in out.partial_success.error_message
    complete = json.dumps({"action": "complete", "sessionKey": "s"}).encode()
    status, raw = _http(c, "POST", "/v1/agent-events", t.host_a, complete, JSON)
    assert status == 403
    after = json.loads(_http(c, "GET", "/v1/sessions/s", t.read)[1])
    assert after == before
    status, raw = _http(c, "POST", "/v1/metrics", t.host_a, _input("a1", "host-a"), PROTO)
    assert status == 200
    assert json.loads(_http(c, "GET", "/v1/sessions/a1", t.read)[1])["host_id"] == "host-a"
    metrics = _http(c, "GET", "/metrics", t.read)[1].decode()
    assert 'lastactive_otlp_forbidden_total{signal="metrics",transport="http"}' in metrics
    assert 'lastactive_auth_failures_total{reason="forbidden",transport="http"}' in metrics
    assert 'lastactive_auth_failures_total{reason="unauthenticated",transport="http"}' in metrics
    assert "lastactive_credentials 4.0" in metrics


# --- gRPC ---------------------------------------------------------------------------------


def _export(service: str, reply: type[Message]) -> Any:
    def call(channel: grpc.Channel, req: Message, metadata: Any) -> Message:
        method = channel.unary_unary(
            f"/{service}/Export",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=reply.FromString,
        )
        return method(req, metadata=metadata, timeout=10)  # type: ignore[no-any-return]

    return call


REPORT_GRPC = [
    ("opentelemetry.proto.collector.metrics.v1.MetricsService",
     metrics_service_pb2.ExportMetricsServiceResponse,
     metrics_service_pb2.ExportMetricsServiceRequest.FromString(_input("s", "host-b"))),
    ("opentelemetry.proto.collector.trace.v1.TraceService",
     trace_service_pb2.ExportTraceServiceResponse, trace_service_pb2.ExportTraceServiceRequest()),
    ("opentelemetry.proto.collector.logs.v1.LogsService",
     logs_service_pb2.ExportLogsServiceResponse, logs_service_pb2.ExportLogsServiceRequest()),
]  # fmt: skip


def _bearer(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def _code(call: Any) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


@pytest.mark.parametrize(("service", "reply", "req"), REPORT_GRPC)
def test_grpc_export(secured: Secured, service: str, reply: type[Message], req: Message) -> None:
    c, t = secured
    export = _export(service, reply)
    with grpc.insecure_channel(c.grpc_target) as ch:
        codes = [_code(lambda tok=tok: export(ch, req, _bearer(tok)))  # type: ignore[misc]
                 for tok in (None, "la_000000000000_forged", t.read, t.report)]  # fmt: skip
    assert codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAUTHENTICATED,
                     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK]  # fmt: skip


def _queries(stub: query_pb2_grpc.ActivityQueryStub) -> dict[str, Any]:
    return {
        "ListSessions": lambda md: stub.ListSessions(query_pb2.ListSessionsRequest(), metadata=md),
        "GetSession": lambda md: stub.GetSession(query_pb2.GetRequest(id="s"), metadata=md),
        "GetHost": lambda md: stub.GetHost(query_pb2.GetRequest(id="host-b"), metadata=md),
        "Decisions": lambda md: stub.Decisions(query_pb2.DecisionsRequest(), metadata=md),
        "Watch": lambda md: next(iter(stub.Watch(query_pb2.WatchRequest(), metadata=md))),
    }


@pytest.mark.parametrize("rpc", ["ListSessions", "GetSession", "GetHost", "Decisions", "Watch"])
def test_grpc_queries(secured: Secured, rpc: str) -> None:
    c, t = secured
    with grpc.insecure_channel(c.grpc_target) as ch:
        call = _queries(query_pb2_grpc.ActivityQueryStub(ch))[rpc]
        codes = [_code(lambda tok=tok: call(_bearer(tok)))  # type: ignore[misc]
                 for tok in (None, t.report, t.act, t.read)]  # fmt: skip
    assert codes == [grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED,
                     grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.OK]  # fmt: skip


def test_grpc_bound_reporter_and_hibernation(secured: Secured) -> None:
    c, t = secured
    metrics = _export(*REPORT_GRPC[0][:2])
    logs = _export(*REPORT_GRPC[2][:2])
    with grpc.insecure_channel(c.grpc_target) as ch:
        out = metrics(ch, REPORT_GRPC[0][2], _bearer(t.host_a))
        assert out.partial_success.rejected_data_points == 1
        out = logs(ch, _hibernate("s"), _bearer(t.report))
        assert out.partial_success.rejected_log_records == 1
        out = logs(ch, _hibernate("s"), _bearer(t.act))
        assert out.partial_success.rejected_log_records == 0
        # Health stays open: load balancers probe it without credentials.
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        health = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest())
        assert health.status == health_pb2.HealthCheckResponse.SERVING
