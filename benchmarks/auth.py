"""What credentials and TLS cost: a token check, a bound reporter's ingest, a small export.

    python benchmarks/auth.py [--requests 400] [--credentials 1000]

1. ``Credentials.authenticate`` per call, with ``--credentials`` entries in the auth file, next
   to a bare SHA-256 of the same token (the floor: the hash is the check).
2. Ingest of a 1000-session request (5000 points), from an unbound principal (the baseline)
   and from one bound to the request's host (the per-identity binding check).
3. Small exports (5 points, one in flight) over OTLP/gRPC to a real collector on a thread of
   this process: no credentials (baseline), a bearer token, a bearer token over TLS (one
   connection, so the handshake is not in the figure).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import trustme
from ingest import make_request  # benchmarks/ingest.py
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)

from lastactive.collector import ActivityState, Ingest, Settings, serve
from lastactive.collector._auth import Credentials, Principal, Scope, create_credential

S = 1_000_000_000
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


def per_call(fn: Any, n: int) -> float:
    began = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - began) / n


def start(settings: Settings) -> tuple[int, asyncio.AbstractEventLoop, asyncio.Event]:
    ready, out = threading.Event(), {}
    loop = asyncio.new_event_loop()

    def run() -> None:
        asyncio.set_event_loop(loop)
        out["stop"] = asyncio.Event()

        def bound(b: Any) -> None:
            out["port"] = b.grpc_port
            ready.set()

        loop.run_until_complete(serve(settings, ready=bound, stop=out["stop"]))

    threading.Thread(target=run, daemon=True).start()
    ready.wait(30)
    return out["port"], loop, out["stop"]


def exports(channel: grpc.Channel, bodies: list[bytes], token: str | None) -> float:
    call = channel.unary_unary(EXPORT)
    md = (("authorization", f"Bearer {token}"),) if token else ()
    call(bodies[0], metadata=md, timeout=30)  # connect (and handshake) outside the timing
    began = time.perf_counter()
    for body in bodies[1:]:
        call(body, metadata=md, timeout=30)
    return (time.perf_counter() - began) / (len(bodies) - 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--credentials", type=int, default=1000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        auth = d / "auth.json"
        token = ""
        for i in range(args.credentials):
            _, tok = create_credential(auth, [Scope.REPORT], name=f"h{i}", host=f"host-{i}")
            token = tok or token
        _, fleet = create_credential(auth, [Scope.REPORT], name="fleet")  # unbound: any host
        assert fleet is not None
        creds = Credentials(auth)
        header = f"Bearer {token}"
        bare = per_call(lambda: hashlib.sha256(token.encode()).hexdigest(), 20000)
        check = per_call(lambda: creds.authenticate(header, None), 20000)
        print(f"token check, {args.credentials} credentials: {check * 1e6:.2f} us "
              f"(bare SHA-256 {bare * 1e6:.2f} us)")  # fmt: skip

        t0 = time.time_ns() - (args.requests + 20) * 5 * S  # the last batch is in the past
        bodies = [make_request(1000, b, t0).SerializeToString() for b in range(20)]
        bound = Principal("bench", frozenset({Scope.REPORT}), host="bench-host")
        rows = []
        for name, principal in (("unbound (baseline)", None), ("bound to its host", bound)):
            ingest = Ingest(ActivityState(started_at=t0 - S))
            began = time.perf_counter()
            for body in bodies:
                req = ExportMetricsServiceRequest.FromString(body)
                out = ingest.metrics(req) if principal is None else ingest.metrics(req, principal)
                assert out.rejected == 0
            rows.append((name, 20 * 5000 / (time.perf_counter() - began)))
        for name, rate in rows:
            print(f"ingest 5000-point requests, {name:20} {rate:9.0f} points/s "
                  f"({rate / rows[0][1]:.2f}x)")  # fmt: skip

        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        leaf.private_key_and_cert_chain_pem.write_to_path(str(d / "cert.pem"))
        leaf.private_key_pem.write_to_path(str(d / "key.pem"))
        small = [make_request(1, b, t0).SerializeToString() for b in range(args.requests)]
        results = []
        for name, extra, tok in (
            ("no credentials (baseline)", {}, None),
            ("bearer token", {"auth_file": auth}, fleet),
            (
                "bearer token + TLS",
                {"auth_file": auth, "tls_cert": d / "cert.pem", "tls_key": d / "key.pem"},
                fleet,
            ),
        ):
            # Each its own database: rising values from its first request.
            settings = Settings(grpc_port=0, http_port=0, db=d / f"{len(results)}.db", **extra)
            port, loop, stop = start(settings)
            target = f"127.0.0.1:{port}"
            channel = (grpc.insecure_channel(target) if "tls_cert" not in extra else
                       grpc.secure_channel(target, grpc.ssl_channel_credentials(
                           ca.cert_pem.bytes())))  # fmt: skip
            with channel:
                results.append((name, exports(channel, small, tok)))
            loop.call_soon_threadsafe(stop.set)
            time.sleep(0.5)
        for name, secs in results:
            print(f"small export over gRPC, {name:26} {secs * 1e3:6.2f} ms "
                  f"({secs / results[0][1]:.2f}x)")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
