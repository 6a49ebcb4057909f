"""Ingest through 1, 2 and 3 ``lastactive serve`` replicas on PostgreSQL, next to one process on
SQLite (the baseline, in the same run; issue 13).

    python benchmarks/replicas.py [--seconds 15] [--sessions 20000] [--senders 2]

Each configuration gets a fresh database (PostgreSQL with fsync on, as a deployment runs it).
``--senders`` processes post OTLP/HTTP protobuf requests of 300 data points (100 sessions x
a last-time gauge and two cumulative byte counters) as fast as they are acknowledged, each
host's requests to one replica (``hash(host) % replicas``, as the shipped HAProxy
configuration keeps a host on one replica). The policy makes sessions idle after 2 s, so
transitions flow too. Printed per configuration:

* acknowledged data points per second, and per CPU-second of the servers (every ``serve``
  process plus the PostgreSQL server's processes): what one more core buys; then the CPU of
  each part and the points per CPU-second of each (what sizes the replicas and the primary);
* transitions emitted per second (PostgreSQL: the outbox; SQLite: ``/metrics``);
* RSS of each replica after the run, and p50 / p99 on each replica of ``GET
  /v1/sessions/{id}`` (a replica reads the committed row through), ``/v1/decisions?limit=100``
  and ``/v1/sessions?limit=100`` (on PostgreSQL: walks of the store's indexes).

The machine has 2 cores: with 3 replicas, PostgreSQL and the senders on it, the points/s show
contention, not scale-out; the per-CPU-second figure is the one to extrapolate from. Nothing
here asserts; it prints.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zlib
from pathlib import Path

import psutil
import psycopg
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.helpers import PostgresServer

S = 1_000_000_000
HOSTS = 200
PER_REQUEST = 100  # sessions per request, 3 points each
PROTO = {"Content-Type": "application/x-protobuf"}
_READY = re.compile(r"on 127\.0\.0\.1:(\d+).* on http://127\.0\.0\.1:(\d+)")


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _request(host: int, sessions: list[int], t: int, start: int) -> bytes:
    cumulative = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    output = [_kv("lastactive.source", "output")]
    resources = []
    for i in sessions:
        last_time = metrics_pb2.NumberDataPoint(
            time_unix_nano=t, as_double=t / S, attributes=output
        )
        io = [
            metrics_pb2.NumberDataPoint(
                time_unix_nano=t,
                start_time_unix_nano=start,
                as_int=(t - start) // 1000,
                attributes=[_kv("network.io.direction", direction)],
            )
            for direction in ("receive", "transmit")
        ]
        metrics = [
            metrics_pb2.Metric(
                name="lastactive.source.last_time", gauge=metrics_pb2.Gauge(data_points=[last_time])
            ),
            metrics_pb2.Metric(
                name="lastactive.session.io",
                sum=metrics_pb2.Sum(
                    is_monotonic=True, aggregation_temporality=cumulative, data_points=io
                ),
            ),
        ]
        resource = {"attributes": [_kv("session.id", f"s{i}"), _kv("host.id", f"h{host}")]}
        scope = metrics_pb2.ScopeMetrics(scope={"name": "bench"}, metrics=metrics)
        resources.append(metrics_pb2.ResourceMetrics(resource=resource, scope_metrics=[scope]))
    return ExportMetricsServiceRequest(resource_metrics=resources).SerializeToString()


def _send(
    ports: list[int], sessions: int, seconds: float, seed: int, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    """One sender: requests of random hosts' sessions, each to its host's replica."""
    rng = random.Random(seed)
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
    by_host = [[i for i in range(sessions) if i % HOSTS == h] for h in range(HOSTS)]
    start = time.time_ns() - 10 * S
    points = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        host = rng.randrange(HOSTS)
        body = _request(host, rng.sample(by_host[host], min(PER_REQUEST, len(by_host[host]))),
                        time.time_ns(), start)  # fmt: skip
        conn = conns[zlib.crc32(f"h{host}".encode()) % len(conns)]
        conn.request("POST", "/v1/metrics", body, PROTO)
        resp = conn.getresponse()
        resp.read()
        if resp.status == 200:
            points += 3 * PER_REQUEST
    out.put(points)


def _cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _start(
    store: list[str], db: Path, name: str, policy: Path
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "serve", "--grpc-port", "0", "--http-port", "0",
         "--db", str(db), "--policy", str(policy), *store, *(["--replica", name] if store else [])],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    match = _READY.search(proc.stdout.readline())
    assert match, "serve did not start"
    return proc, int(match[2])


def _latency(port: int, paths: list[str]) -> tuple[float, float]:
    """p50 and p99 (ms) of GETs of ``paths``, one after another on one connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    times = []
    for path in paths:
        began = time.perf_counter()
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200, (path, resp.status)
        times.append(time.perf_counter() - began)
    times.sort()
    return statistics.median(times) * 1000, times[max(0, int(len(times) * 0.99) - 1)] * 1000


def _queries(port: int) -> dict[str, list[str]]:
    """What each replica is asked after the run: 200 of the sessions sent (random hosts were
    sent, so not every session exists), decisions, a page of the session list."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/sessions?limit=200", timeout=30) as r:
        ids = [s["id"] for s in json.load(r)["sessions"]]
    return {
        "GET one session": [f"/v1/sessions/{sid}" for sid in ids],
        "decisions?limit=100": ["/v1/decisions?within=3600&limit=100"] * 50,
        "sessions?limit=100": ["/v1/sessions?limit=100"] * 50,
    }


def _transitions_sqlite(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("lastactive_transitions_total"))  # fmt: skip


def run(
    label: str,
    replicas: int,
    url: str | None,
    pg: PostgresServer | None,
    args: argparse.Namespace,
    tmp: Path,
) -> None:
    policy = tmp / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 2\nhibernate_after = 3600\n")
    store = ["--store", url] if url else []
    servers = [_start(store, tmp / f"{label}.db", f"r{n}", policy) for n in range(replicas)]
    procs = [psutil.Process(p.pid) for p, _ in servers]
    database: list[psutil.Process] = []
    if pg is not None and pg.proc is not None:
        root = psutil.Process(pg.proc.pid)
        database = [root, *root.children(recursive=True)]
    time.sleep(1 + 2 * bool(url))  # leases settle
    cpu0, db0, t0 = _cpu(procs), _cpu(database), time.monotonic()
    out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
    senders = [multiprocessing.Process(target=_send, args=([p for _, p in servers], args.sessions,
                                                           args.seconds, n, out))
               for n in range(args.senders)]  # fmt: skip
    for s in senders:
        s.start()
    points = sum(out.get() for _ in senders)
    for s in senders:
        s.join()
    elapsed, serving, db = time.monotonic() - t0, _cpu(procs) - cpu0, _cpu(database) - db0
    cpu = serving + db
    time.sleep(3)  # the last idle transitions
    if url:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM outbox").fetchone()
        transitions = float(row[0]) if row else 0.0
    else:
        transitions = _transitions_sqlite(servers[0][1])
    rss = [psutil.Process(p.pid).memory_info().rss / 2**20 for p, _ in servers]
    queries = {name: [_latency(port, paths) for _, port in servers]
               for name, paths in _queries(servers[0][1]).items()}  # fmt: skip
    for p, _ in servers:
        p.terminate()
        p.wait(30)
    print(f"{label:<22} {points / elapsed:>10,.0f} points/s {points / max(cpu, 1e-9):>10,.0f} "
          f"points/CPU-s {transitions / (elapsed + 3):>8,.1f} transitions/s  RSS MiB "
          + "/".join(f"{r:.0f}" for r in rss), flush=True)  # fmt: skip
    print(f"    CPU-s: serve {serving:.1f}, PostgreSQL {db:.1f}; points per CPU-s of serve "
          f"{points / max(serving, 1e-9):,.0f}"
          + (f", of PostgreSQL {points / db:,.0f}" if db else ""), flush=True)  # fmt: skip
    for name, figures in queries.items():
        print(f"    {name:<20} p50/p99 ms per replica: "
              + "  ".join(f"{a:.2f}/{b:.2f}" for a, b in figures), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--sessions", type=int, default=20000)
    parser.add_argument("--senders", type=int, default=2)
    args = parser.parse_args()
    print(f"{args.sessions} sessions on {HOSTS} hosts, {args.senders} senders, "
          f"{args.seconds:.0f} s each, {3 * PER_REQUEST} points per request")  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        run("sqlite, 1 process", 1, None, None, args, tmp)
        pg = PostgresServer(fsync=True).start()
        try:
            for n in (1, 2, 3):
                run(f"postgresql, {n} replica" + "s" * (n > 1), n,
                    pg.create_database(f"bench_{n}"), pg, args, tmp)  # fmt: skip
        finally:
            pg.stop()


if __name__ == "__main__":
    main()
