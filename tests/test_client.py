"""``lastactive.client``: one rule for where the collector is, for every subcommand."""

from __future__ import annotations

from pathlib import Path

import pytest
import trustme
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

from lastactive.client import (
    HOOK_TIMEOUT_S,
    _routing,
    headers_for,
    hook_timeout,
    http_url,
    logs_request,
    otlp_endpoint,
    tls_context,
)


def test_http_url_flag_then_url_then_the_serve_variables() -> None:
    env = {"LASTACTIVE_URL": "http://c:9/", "LASTACTIVE_HTTP_PORT": "5000"}
    assert http_url("http://flag:1/", env) == "http://flag:1"
    assert http_url(None, env) == "http://c:9"
    assert http_url(None, {"LASTACTIVE_HTTP_PORT": "5000"}) == "http://127.0.0.1:5000"
    assert http_url(None, {}) == "http://127.0.0.1:4318"
    assert http_url(None, {"LASTACTIVE_HOST": "0.0.0.0"}) == "http://127.0.0.1:4318"  # wildcard
    assert http_url(None, {"LASTACTIVE_HOST": "::1", "LASTACTIVE_HTTP_PORT": "7"}) == (
        "http://[::1]:7"
    )


def test_otlp_endpoint_leaves_otel_variables_to_the_sdk() -> None:
    assert otlp_endpoint("http://flag:1", "metrics", "grpc", {}) == "http://flag:1"
    otel = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://o:4317", "LASTACTIVE_GRPC_PORT": "9"}
    assert otlp_endpoint(None, "metrics", "grpc", otel) is None  # the SDK reads it
    only_logs = {"OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://o:1", "LASTACTIVE_GRPC_PORT": "9"}
    assert otlp_endpoint(None, "logs", "grpc", only_logs) is None
    assert otlp_endpoint(None, "traces", "grpc", only_logs) == "http://127.0.0.1:9"
    ours = {"LASTACTIVE_HOST": "10.1.2.3", "LASTACTIVE_HTTP_PORT": "5000"}
    assert otlp_endpoint(None, "logs", "http", ours) == "http://10.1.2.3:5000"
    assert otlp_endpoint(None, "logs", "grpc", ours) == "http://10.1.2.3:4317"
    assert otlp_endpoint(None, "logs", "grpc", {}) is None  # the SDK's default


def test_hook_timeout() -> None:
    assert hook_timeout({}) == HOOK_TIMEOUT_S
    assert hook_timeout({"LASTACTIVE_HOOK_TIMEOUT": "1.5"}) == 1.5
    assert hook_timeout({"LASTACTIVE_HOOK_TIMEOUT": "soon"}) == HOOK_TIMEOUT_S


def test_logs_request_is_valid_otlp_json() -> None:
    body = logs_request(
        {"service.name": "t", "n": 3, "ok": True},
        [("lastactive.activity", {"lastactive.source": "prompt", "x": 1.5}, 1_800_000_000_000)],
    )
    req = json_format.ParseDict(body, ExportLogsServiceRequest())
    record = req.resource_logs[0].scope_logs[0].log_records[0]
    assert record.event_name == "lastactive.activity" and record.time_unix_nano == 1_800_000_000_000
    resource = {kv.key: kv.value for kv in req.resource_logs[0].resource.attributes}
    assert resource["n"].int_value == 3 and resource["ok"].bool_value is True
    assert req.resource_logs[0].scope_logs[0].scope.name == "lastactive"


def test_headers_follow_the_otel_variables_and_lastactive_token() -> None:
    otel = {"OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20la_x ,x-lastactive-host=h1,bad"}
    assert headers_for("otlp", otel) == {"Authorization": "Bearer la_x", "x-lastactive-host": "h1"}
    assert headers_for("api", otel) == headers_for("otlp", otel)  # one token for everything
    both = {**otel, "LASTACTIVE_TOKEN": "la_read", "OTEL_EXPORTER_OTLP_LOGS_HEADERS": "a=b"}
    assert headers_for("api", both) == {"Authorization": "Bearer la_read"}
    assert headers_for("otlp", both) == {"a": "b"}  # the signal's own variable first
    assert headers_for("otlp", {"LASTACTIVE_TOKEN": "la_r"}) == {"Authorization": "Bearer la_r"}
    assert headers_for("api", {}) == {}


def test_tls_context_only_for_https_and_from_the_otel_certificate(tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    env = {"OTEL_EXPORTER_OTLP_CERTIFICATE": str(tmp_path / "ca.pem")}
    assert tls_context("http://127.0.0.1:4318", env) is None
    ctx = tls_context("https://collector:4318", env)
    assert ctx is not None and ctx.cert_store_stats()["x509_ca"] == 1
    with pytest.raises(OSError):
        tls_context("https://collector:4318", {"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent"})


def test_one_shot_posts_carry_the_routing_header_of_their_host() -> None:
    """``post_logs`` sends ``lastactive-host-id`` (a balancer in front of replicas hashes on
    it); a body that is no logs request gets none and is the collector's to refuse."""
    body = logs_request({"host.id": "web-1", "session.id": "s"}, [("e", {}, 1)])
    assert _routing(body) == {"lastactive-host-id": "web-1"}
    assert _routing(logs_request({"session.id": "s"}, [("e", {}, 1)])) == {}
    for bad in ({"resourceLogs": 5}, {}, {"resourceLogs": [{"resource": None}]}):
        assert _routing(bad) == {}
