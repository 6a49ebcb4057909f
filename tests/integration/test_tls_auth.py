"""A collector as a fleet deploys it: TLS on both ports, tokens with scopes, client certificates,
reloaded on SIGHUP; every client (SDK exporters in ``lastactive run``, ``hook``, ``ls``) sends
the configured credential and trusts the configured CA. Certificates are minted by ``trustme``."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
import trustme
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2

from lastactive.collector._auth import Scope, create_credential, revoke_credential
from lastactive.collector.proto import query_pb2, query_pb2_grpc
from tests.helpers import Collector, S, metrics_request, sum_point, wait_for

LASTACTIVE = [sys.executable, "-m", "lastactive"]
FIXTURES = Path(__file__).parents[1] / "fixtures" / "claude_hooks"
METRICS_EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


@dataclass
class Pki:
    ca: trustme.CA
    ca_pem: Path
    cert: Path
    key: Path
    tmp: Path

    def issue(self, name: str, ca: trustme.CA | None = None) -> tuple[Path, Path]:
        leaf = (ca or self.ca).issue_cert(name)
        cert, key = self.tmp / f"{name}.pem", self.tmp / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key

    def context(self, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_pem))
        if client is not None:
            ctx.load_cert_chain(*client)
        return ctx


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = trustme.CA()
    ca_pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    server = ca.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    server.private_key_and_cert_chain_pem.write_to_path(str(cert))
    server.private_key_pem.write_to_path(str(key))
    return Pki(ca, ca_pem, cert, key, tmp_path)


@pytest.fixture
def auth_file(tmp_path: Path) -> Path:
    return tmp_path / "auth.json"


def token(path: Path, *scopes: Scope, name: str, host: str | None = None) -> str:
    _, tok = create_credential(path, scopes, name=name, host=host)
    assert tok is not None
    return tok


def https(
    c: Collector, pki: Pki, path: str, tok: str | None, client: tuple[Path, Path] | None = None
) -> tuple[int, Any]:
    req = urllib.request.Request(f"https://127.0.0.1:{c.http_port}{path}")
    if tok:
        req.add_header("Authorization", f"Bearer {tok}")
    try:
        with urllib.request.urlopen(req, timeout=10, context=pki.context(client)) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def secure_channel(c: Collector, pki: Pki, client: tuple[Path, Path] | None = None) -> Any:
    kw = {}
    if client is not None:
        kw = {"private_key": client[1].read_bytes(), "certificate_chain": client[0].read_bytes()}
    creds = grpc.ssl_channel_credentials(pki.ca_pem.read_bytes(), **kw)
    return grpc.secure_channel(f"127.0.0.1:{c.grpc_port}", creds)


def _bearer(tok: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {tok}"),)


def input_request(sid: str, host: str) -> metrics_service_pb2.ExportMetricsServiceRequest:
    now = time.time_ns()
    req = metrics_request(sid, host_id=host, gauges={"lastactive.source.last_time": [
        sum_point(0, now, 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = now / S - 1
    return req


def export(channel: Any, req: Any, tok: str | None = None) -> Any:
    call = channel.unary_unary(
        METRICS_EXPORT,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=metrics_service_pb2.ExportMetricsServiceResponse.FromString,
    )
    metadata = _bearer(tok) if tok else ()
    return call(req, metadata=metadata, timeout=10)


@pytest.fixture
def started() -> Iterator[list[Collector]]:
    collectors: list[Collector] = []
    yield collectors
    for c in collectors:
        if c.proc is not None and c.proc.poll() is None:
            c.stop()


def test_every_client_reports_and_reads_over_tls_with_its_token(
    pki: Pki, auth_file: Path, tmp_path: Path, lastactive_env: dict[str, str],
    started: list[Collector],
) -> None:  # fmt: skip
    reporter = token(auth_file, Scope.REPORT, name="reporter")
    reader = token(auth_file, Scope.READ, Scope.ACT, name="culler")
    c = Collector(tmp_path / "db", "--auth-file", str(auth_file), "--tls-cert", str(pki.cert),
                  "--tls-key", str(pki.key)).start()  # fmt: skip
    started.append(c)
    env = {**lastactive_env, "OTEL_EXPORTER_OTLP_CERTIFICATE": str(pki.ca_pem),
           "OTEL_EXPORTER_OTLP_HEADERS": f"Authorization=Bearer%20{reporter}"}  # fmt: skip
    # The SDK exporters of `lastactive run`, over gRPC and over HTTP.
    for sid, protocol, port in (("tls-grpc", "grpc", c.grpc_port),
                                ("tls-http", "http/protobuf", c.http_port)):  # fmt: skip
        run_env = {**env, "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
                   "OTEL_EXPORTER_OTLP_ENDPOINT": f"https://127.0.0.1:{port}"}  # fmt: skip
        done = subprocess.run([*LASTACTIVE, "run", "--session-id", sid, "--", "sh", "-c",
                               "echo hello"], env=run_env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=60, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        s = wait_for(lambda sid=sid: (r := https(c, pki, f"/v1/sessions/{sid}", reader))[0]
                     == 200 and r[1], what=f"{sid} reported over TLS")  # type: ignore[misc]  # fmt: skip
        assert s["output_bytes"] > 0 and s["process"]["status"] == "exited"
    # The hook (stdlib client) with the same variables.
    url = f"https://127.0.0.1:{c.http_port}"
    payload = (FIXTURES / "UserPromptSubmit.json").read_text().replace("SESSION", "tls-hook")
    done = subprocess.run([*LASTACTIVE, "hook", "claude", "--url", url], input=payload.encode(),
                          env=env, capture_output=True, timeout=10, check=False)  # fmt: skip
    assert done.returncode == 0
    status, s = https(c, pki, "/v1/sessions/tls-hook", reader)
    assert status == 200 and s["last_source"] == "prompt"
    # `ls` reads with LASTACTIVE_TOKEN; without it the collector refuses.
    ls_env = {**env, "LASTACTIVE_TOKEN": reader, "LASTACTIVE_URL": url}
    ls_env.pop("OTEL_EXPORTER_OTLP_HEADERS")
    done = subprocess.run([*LASTACTIVE, "ls", "--json"], env=ls_env, capture_output=True,
                          timeout=20, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert {"tls-grpc", "tls-http", "tls-hook"} <= {s["id"] for s in json.loads(done.stdout)}
    ls_env.pop("LASTACTIVE_TOKEN")
    done = subprocess.run([*LASTACTIVE, "ls"], env=ls_env, capture_output=True, timeout=20,
                          check=False)  # fmt: skip
    assert done.returncode == 1 and b"401" in done.stderr
    # Plain HTTP and plain gRPC are not served.
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{c.http_port}/v1/sessions", timeout=5)
    with grpc.insecure_channel(f"127.0.0.1:{c.grpc_port}") as plain, pytest.raises(grpc.RpcError):
        export(plain, input_request("x", "h"), reporter)


def test_client_certificates_bind_a_reporter_to_its_host(
    pki: Pki, auth_file: Path, tmp_path: Path, started: list[Collector]
) -> None:
    create = ["create", "--scope", "report", "--host", "host-a", "--certificate", "host-a.example"]
    done = subprocess.run([*LASTACTIVE, "token", "--auth-file", str(auth_file), *create],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("granted host-a.example")
    reader = token(auth_file, Scope.READ, name="reader")
    tls = ["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)]
    c = Collector(tmp_path / "db", "--auth-file", str(auth_file), *tls,
                  "--tls-client-ca", str(pki.ca_pem)).start()  # fmt: skip
    started.append(c)
    host_a = pki.issue("host-a.example")
    with secure_channel(c, pki, host_a) as ch:
        assert not export(ch, input_request("a-1", "host-a")).HasField("partial_success")
        out = export(ch, input_request("b-1", "host-b"))
        assert out.partial_success.rejected_data_points == 1
        assert "host-a" in out.partial_success.error_message
    assert https(c, pki, "/v1/sessions/a-1", reader, host_a)[0] == 200
    assert https(c, pki, "/v1/sessions/b-1", reader, host_a)[0] == 404
    # Without a client certificate, or with one from another CA, there is no connection.
    stranger = pki.issue("host-a.example", trustme.CA())
    for client in (None, stranger):
        with secure_channel(c, pki, client) as ch, pytest.raises(grpc.RpcError) as err:
            export(ch, input_request("a-2", "host-a"))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            https(c, pki, "/v1/sessions", reader, client)
    # A certificate the CA signed but the auth file does not name has no scope.
    other = pki.issue("host-z.example")
    with secure_channel(c, pki, other) as ch, pytest.raises(grpc.RpcError) as err:
        export(ch, input_request("z-1", "host-z"))
    assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED


def _served_certificate(port: int, pki: Pki, alpn: str | None = None) -> bytes:
    ctx = pki.context()
    if alpn:
        ctx.set_alpn_protocols([alpn])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:  # noqa: SIM117
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            der = tls.getpeercert(binary_form=True)
    assert der is not None
    return der


def test_sighup_reloads_tokens_and_certificates_without_dropping_connections(
    pki: Pki, auth_file: Path, tmp_path: Path, started: list[Collector]
) -> None:
    old = token(auth_file, Scope.READ, Scope.REPORT, name="old")
    c = Collector(tmp_path / "db", "--auth-file", str(auth_file), "--tls-cert", str(pki.cert),
                  "--tls-key", str(pki.key)).start()  # fmt: skip
    started.append(c)
    first_http = _served_certificate(c.http_port, pki)
    first_grpc = _served_certificate(c.grpc_port, pki, "h2")
    # Connections opened before the reload: an SSE watch stream and a gRPC channel.
    watch = urllib.request.urlopen(urllib.request.Request(
        f"https://127.0.0.1:{c.http_port}/v1/watch", headers={"Authorization": f"Bearer {old}"}),
        timeout=20, context=pki.context())  # fmt: skip
    assert watch.readline().startswith(b"id: ")  # the (one-page) snapshot's resume point
    assert watch.readline().startswith(b"event: snapshot")
    channel = secure_channel(c, pki)
    stub = query_pb2_grpc.ActivityQueryStub(channel)
    stub.ListSessions(query_pb2.ListSessionsRequest(), metadata=_bearer(old))

    new = token(auth_file, Scope.READ, Scope.REPORT, name="new")
    revoke_credential(auth_file, "old")
    renewed = pki.ca.issue_cert("127.0.0.1", "localhost")
    renewed.private_key_and_cert_chain_pem.write_to_path(str(pki.cert))
    renewed.private_key_pem.write_to_path(str(pki.key))
    assert c.proc is not None
    c.proc.send_signal(signal.SIGHUP)

    wait_for(lambda: https(c, pki, "/v1/sessions", old)[0] == 401, what="the old token revoked")
    assert https(c, pki, "/v1/sessions", new)[0] == 200
    assert _served_certificate(c.http_port, pki) not in (first_http, b"")
    assert _served_certificate(c.grpc_port, pki, "h2") != first_grpc
    # The channel opened before still works (with the new token: the old one is revoked) ...
    bearer = _bearer(new)
    export(channel, input_request("after-reload", "h"), new)
    assert stub.GetSession(query_pb2.GetRequest(id="after-reload"), metadata=bearer).id
    channel.close()
    # ... and so does the watch stream: the new session's transition arrives on it.
    lines = []
    while not any(b"after-reload" in line for line in lines):
        lines.append(watch.readline())
        assert lines[-1], "the watch stream ended"
    watch.close()
    assert c.stop() == 0


def test_a_bind_beyond_loopback_needs_credentials_and_tls(tmp_path: Path, pki: Pki) -> None:
    for extra, missing in (([], "credentials (--auth-file) and TLS"),
                           (["--auth-file", str(tmp_path / "a.json")], "TLS"),
                           (["--tls-cert", str(pki.cert), "--tls-key", str(pki.key)],
                            "credentials")):  # fmt: skip
        done = subprocess.run([*LASTACTIVE, "serve", "--host", "0.0.0.0", "--db",
                               str(tmp_path / "db"), *extra], capture_output=True, text=True,
                              timeout=30, check=False)  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert f"refusing to serve 0.0.0.0 without {missing}" in done.stderr
        assert "--insecure" in done.stderr
