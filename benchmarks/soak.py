"""Soak: a real ``lastactive serve`` under session churn for ``--minutes`` (default 10), its
RSS, open fds and threads sampled every ``--every`` seconds. RSS must stay flat: sessions end
and are purged (``--retention``), counter streams and reporters are forgotten, watchers that
never read cost O(1).

    python benchmarks/soak.py [--minutes 10] [--rate 50] [--retention 60]

Load per second: ``--rate`` new sessions, each reporting start, input and output activity, an
io counter over gRPC, a hold and its release, then its exit (OTLP/HTTP JSON); agent
spawn/complete over the webhook; ``/v1/sessions?limit=10`` and ``/v1/decisions`` queries.
Two SSE watchers are open throughout, one reading and one that never reads.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import grpc
import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

READY = re.compile(r"on 127\.0\.0\.1:(\d+), OTLP/HTTP and query HTTP on http://127\.0\.0\.1:(\d+)")
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _post(url: str, body: Any) -> None:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()


def _events(sid: str, events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    t = str(time.time_ns())
    records = [
        {"timeUnixNano": t, "observedTimeUnixNano": t, "eventName": name,
         "attributes": [{"key": k, "value": {"intValue": str(v)} if isinstance(v, int)
                         else {"stringValue": v}} for k, v in attrs.items()]}
        for name, attrs in events
    ]  # fmt: skip
    attrs = {"session.id": sid, "host.id": f"h{hash(sid) % 20}", "service.instance.id": sid}
    resource = {"attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs.items()]}
    return {"resourceLogs": [{"resource": resource, "scopeLogs": [{"logRecords": records}]}]}


def _io(sid: str, value: int, start: int) -> bytes:
    point = metrics_pb2.NumberDataPoint(
        time_unix_nano=time.time_ns(), start_time_unix_nano=start, as_int=value,
        attributes=[KeyValue(key="network.io.direction",
                             value=AnyValue(string_value="transmit"))],
    )  # fmt: skip
    return ExportMetricsServiceRequest(resource_metrics=[{
        "resource": {"attributes": [KeyValue(key="session.id", value=AnyValue(string_value=sid)),
                                    KeyValue(key="service.instance.id",
                                             value=AnyValue(string_value=sid))]},
        "scope_metrics": [{"metrics": [metrics_pb2.Metric(name="lastactive.session.io", sum={
            "data_points": [point], "is_monotonic": True,
            "aggregation_temporality": CUMULATIVE})]}],
    }]).SerializeToString()  # fmt: skip


def churn(
    http: str, grpc_port: int, rate: int, stop: threading.Event, counts: dict[str, int]
) -> None:
    n = 0
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        export = channel.unary_unary(EXPORT)
        while not stop.is_set():
            began = time.monotonic()
            for _ in range(rate):
                n += 1
                sid = f"soak-{n}"
                start = time.time_ns()
                hold = {"session.id": sid, "lastactive.hold": "lease", "lastactive.hold.id": "l"}
                _post(f"{http}/v1/logs", _events(sid, [
                    ("lastactive.activity", {"lastactive.source": "start"}),
                    ("lastactive.activity", {"lastactive.source": "input"}),
                    ("lastactive.hold", {**hold, "lastactive.hold.until": 0}),
                ]))  # fmt: skip
                for k in range(1, 3):
                    export(_io(sid, 1000 * k, start), timeout=30)
                _post(f"{http}/v1/logs", _events(sid, [
                    ("lastactive.hold", {**hold, "lastactive.hold.until": int(time.time())}),
                    ("lastactive.process.exit", {"process.exit.code": 0}),
                ]))  # fmt: skip
                _post(f"{http}/v1/agent-events", {"action": "spawn", "sessionKey": f"agent-{n}"})
                _post(f"{http}/v1/agent-events", {"action": "complete", "sessionKey": f"agent-{n}"})
            for path in ("/v1/sessions?limit=10", "/v1/decisions"):
                with urllib.request.urlopen(http + path, timeout=30) as r:
                    r.read()
            counts["sessions"] = n
            stop.wait(max(0.0, 1.0 - (time.monotonic() - began)))


def watchers(http_port: int) -> list[socket.socket]:
    """Two SSE watchers: the first is read by a thread, the second never."""
    socks = []
    for _ in range(2):
        s = socket.create_connection(("127.0.0.1", http_port))
        s.sendall(b"GET /v1/watch HTTP/1.1\r\nHost: soak\r\n\r\n")
        socks.append(s)

    def drain(s: socket.socket) -> None:
        with contextlib.suppress(OSError):  # closed at the end
            while s.recv(65536):
                pass

    threading.Thread(target=drain, args=(socks[0],), daemon=True).start()
    return socks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=30.0)
    ap.add_argument("--rate", type=int, default=50, help="new sessions per second")
    ap.add_argument("--retention", type=float, default=60.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "lastactive", "serve", "--grpc-port", "0", "--http-port", "0",
             "--db", str(Path(tmp) / "soak.db"), "--retention", str(args.retention)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        match = READY.search(proc.stdout.readline())
        assert match, "the collector did not start"
        grpc_port, http_port = int(match[1]), int(match[2])
        http = f"http://127.0.0.1:{http_port}"
        server = psutil.Process(proc.pid)
        socks = watchers(http_port)
        stop = threading.Event()
        counts = {"sessions": 0}
        load = threading.Thread(target=churn, args=(http, grpc_port, args.rate, stop, counts))
        load.start()
        began = time.monotonic()
        rows = []
        print(f"{'minute':>6} {'sessions sent':>13} {'tracked':>8} {'RSS MiB':>8} {'fds':>5} "
              f"{'threads':>7}", flush=True)  # fmt: skip
        try:
            while (elapsed := time.monotonic() - began) < args.minutes * 60 and load.is_alive():
                with urllib.request.urlopen(f"{http}/metrics", timeout=30) as r:
                    metrics = r.read().decode()
                tracked = sum(
                    float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                    if line.startswith("lastactive_sessions{")
                )  # fmt: skip
                rss = server.memory_info().rss / 2**20
                row = (elapsed / 60, counts["sessions"], tracked, rss, server.num_fds(),
                       server.num_threads())  # fmt: skip
                rows.append(row)
                print(f"{row[0]:6.1f} {row[1]:13d} {row[2]:8.0f} {row[3]:8.1f} {row[4]:5d} "
                      f"{row[5]:7d}", flush=True)  # fmt: skip
                time.sleep(args.every)
        finally:
            stop.set()
            load.join(60)
            for s in socks:
                s.close()
            proc.terminate()
            proc.wait(30)
        half = rows[len(rows) // 2 :]
        print(
            f"RSS after warm-up (second half): {min(r[3] for r in half):.1f}-"
            f"{max(r[3] for r in half):.1f} MiB; first sample {rows[0][3]:.1f} MiB, "
            f"last {rows[-1][3]:.1f} MiB; {counts['sessions']} sessions created in "
            f"{rows[-1][0]:.1f} min"
        )


if __name__ == "__main__":
    main()
