"""A real ``lastactive serve`` on a database of N sessions: start-up, event-loop lag, latency.

    python benchmarks/serve_scale.py [--sessions 10000 100000 1000000] [--seconds 20]
                                     [--rate 10000]

For each N (and an empty database first, the baseline of the same run) it writes a SQLite
database with N sessions on 1000 hosts, starts ``lastactive serve`` on it and measures:

* start-up: seconds until ``/healthz`` answers, until an OTLP/HTTP export is acknowledged
  (both while the state is still loading), until ``/readyz`` (loaded and primed); its
  baseline, the floor of any start-up from that file: reading every stored row into Python
  tuples in this process (``sqlite3``, the columns the store loads, nothing decoded), before
  the serve starts;
* the event loop's lag (the collector's own ``lastactive_event_loop_lag_max_seconds``, read
  every second) while loading, and under steady ingest;
* GET one session (p50, p99), and ``sessions?limit=10`` and ``decisions`` once a second
  (p99), while the same generator sends to another ``serve`` (an empty database) for half of
  ``--seconds``: the baseline of those under load, the machine as busy but the event loop not
  shared with the ingest;
* under steady ingest (another process sends OTLP/HTTP at ``--rate`` data points/s to random
  existing sessions for ``--seconds``): the loop's lag and GET one session (p50, p99) in the
  first half; in the second half also ``sessions?limit=10``, ``decisions`` and a ``/metrics``
  scrape once a second each (p99), and the lag and GET p99 with them;
* the cyclic GC's pauses (the collector's own ``lastactive_gc_pause_seconds``): the longest
  while loading, and the full collections under load;
* the serve process's RSS per session once loaded: all of it, and what it adds to the
  empty database's process (the same run's baseline: the interpreter and libraries).

Issue 15's goals: start-up <= 5 s at 1M, lag <= 50 ms, GET p99 <= 2 ms, decisions and lists
<= 50 ms, <= 1 KB per session, GC pauses <= 50 ms. Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from lastactive.collector._record import RECORD_FIELDS, EntityRecord
from lastactive.collector.store import SqliteStore

S = 1_000_000_000
HOSTS = 1000
POINTS_PER_REQUEST = 300  # 100 sessions x 3 sources
PROTO = {"Content-Type": "application/x-protobuf"}
INF = float("inf")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def save_fleet(db: Path, records: Iterable[EntityRecord]) -> None:
    """Write ``records`` to a new SQLite store at ``db``, 50,000 per commit."""
    store = SqliteStore(db)
    batch: list[EntityRecord] = []
    for r in records:
        batch.append(r)
        if len(batch) == 50_000:
            store.save(batch)
            batch = []
    store.save(batch)
    store.close()


def write_fleet(db: Path, n: int, now: int) -> None:
    """N sessions (in use, idle, hibernated, ended, as in benchmarks/scale.py) and their hosts."""

    def sessions() -> Iterator[EntityRecord]:
        for i in range(n):
            if i % 100 == 0:
                t = now - (1500 + i * 7 % 600) * S
            elif i % 3 == 0:
                t = now - (7200 + i * 7 % 7200) * S
            else:
                t = now - (i * 7 % 60) * S
            sources = {"input": t, "process": now - (i * 7 % 10) * S}
            if i % 3 == 0 and i % 100:
                sources["hibernate"] = t + 1800 * S
            if i % 20 == 1:
                sources["exit"] = now - (i * 7 % 7200) * S
            yield EntityRecord(
                kind="session",
                id=f"session-{i:08d}",
                host_id=f"host-{i % HOSTS:04d}",
                first_seen=t - 60 * S,
                last_seen=now - S,
                sources=tuple(sorted(sources.items())),
            )
        for h in range(min(n, HOSTS)):
            yield EntityRecord(
                kind="host",
                id=f"host-{h:04d}",
                first_seen=now - 86400 * S,
                last_seen=now - S,
                sources=(("process", now - S),),
            )

    save_fleet(db, sessions())


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def read_rows(db: Path) -> float:
    """Seconds to read every entity row of the SQLite store at ``db`` into tuples (the
    columns the store loads, nothing decoded or checked)."""
    began = time.perf_counter()
    with contextlib.closing(sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)) as c:
        cursor = c.execute(f"SELECT {', '.join(RECORD_FIELDS)} FROM entities")
        while cursor.fetchmany(5000):
            pass
    return time.perf_counter() - began


def last_time_request(
    sessions: Iterable[int], t: int, sources: tuple[str, ...] = ("input", "output", "process")
) -> bytes:
    """An OTLP metrics export: a ``lastactive.source.last_time`` point at ``t`` (ns) for each
    of ``sources`` of each session ``session-{i:08d}`` in ``sessions``."""
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=t,
            as_double=t / S,
            attributes=[_kv("session.id", f"session-{i:08d}"), _kv("lastactive.source", src)],
        )
        for i in sessions
        for src in sources
    ]
    metric = metrics_pb2.Metric(
        name="lastactive.source.last_time", gauge=metrics_pb2.Gauge(data_points=points)
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={"attributes": [_kv("service.name", "bench")]},
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])],
            )
        ]
    ).SerializeToString()


def generate(port: int, n: int, rate: float, seconds: float) -> None:
    """Send OTLP/HTTP exports of POINTS_PER_REQUEST points to random existing sessions at
    ``rate`` points/s for ``seconds`` (run as its own process)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    rng = random.Random(1)
    interval = POINTS_PER_REQUEST / rate
    began = time.monotonic()
    sent = 0
    while time.monotonic() - began < seconds:
        body = last_time_request([rng.randrange(max(n, 1)) for _ in range(100)], time.time_ns())
        conn.request("POST", "/v1/metrics", body, PROTO)
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        sent += 1
        delay = began + sent * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(json.dumps({"points": sent * POINTS_PER_REQUEST, "seconds": time.monotonic() - began}))


class Http:
    """One keep-alive connection; ``get`` returns (status, body, seconds)."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def get(self, path: str) -> tuple[int, bytes, float]:
        began = time.perf_counter()
        try:
            self._conn.request("GET", path)
            r = self._conn.getresponse()
            body = r.read()
        except (ConnectionError, http.client.HTTPException, OSError):
            self._conn.close()
            self._conn = http.client.HTTPConnection("127.0.0.1", self._port, timeout=120)
            return 0, b"", time.perf_counter() - began
        return r.status, body, time.perf_counter() - began

    def post(self, path: str, body: bytes) -> int:
        self._conn.request("POST", path, body, PROTO)
        r = self._conn.getresponse()
        r.read()
        return r.status


class Reading(NamedTuple):
    """What one ``/metrics`` scrape says of pauses: the longest loop lag of the last minute
    (seconds), the lag histogram and the full GC collections' pause histogram (bucket bound
    -> cumulative count), and the longest GC pause of the last minute (seconds)."""

    lag_max: float
    lag: dict[float, float]
    gc_full: dict[float, float]
    gc_max: float


def _lag(client: Http) -> Reading:
    """The collector's pauses, as of now (all zero when the scrape fails)."""
    status, body, _ = client.get("/metrics")
    lag_max, lag, gc_full, gc_max = 0.0, {}, {}, 0.0
    for line in body.decode().splitlines() if status == 200 else ():
        if line.startswith("lastactive_event_loop_lag_max_seconds "):
            lag_max = float(line.split()[1])
        elif line.startswith("lastactive_event_loop_lag_seconds_bucket{"):
            lag[_bound(line)] = float(line.split()[-1])
        elif line.startswith('lastactive_gc_pause_seconds_bucket{generation="2",'):
            gc_full[_bound(line)] = float(line.split()[-1])
        elif line.startswith("lastactive_gc_pause_max_seconds{"):
            gc_max = max(gc_max, float(line.split()[-1]))
    return Reading(lag_max, lag, gc_full, gc_max)


def _bound(line: str) -> float:
    return float(line.split('le="')[1].split('"', maxsplit=1)[0])


def _worst_bucket(before: dict[float, float], after: dict[float, float]) -> float:
    """The upper bound (seconds) of the highest bucket counted between two readings (0: none
    counted)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]  # cumulative
    if not counts or not counts[-1]:
        return 0.0
    for i in range(len(bounds) - 1, 0, -1):
        if counts[i] > counts[i - 1]:
            return bounds[i]
    return bounds[0]


def _over(before: dict[float, float], after: dict[float, float], bound: float) -> float:
    """Counts over ``bound`` seconds (late probes, long pauses) between two readings."""
    total = after[INF] - before.get(INF, 0.0)
    return total - (after[bound] - before.get(bound, 0.0))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0-1) of ``values`` (nan when empty)."""
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def _serve(db: Path) -> tuple[subprocess.Popen[bytes], int]:
    """``lastactive serve`` on ``db`` (free ports); the process and its HTTP port."""
    http_port, grpc_port = _free_port(), _free_port()
    serve = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "serve", "--db", str(db),
         "--http-port", str(http_port), "--grpc-port", str(grpc_port)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return serve, http_port


def _generator(port: int, n: int, rate: float, seconds: float) -> subprocess.Popen[str]:
    """:func:`generate` in a process of its own (it prints what it sent)."""
    return subprocess.Popen(
        [sys.executable, __file__, "--generate", str(port), str(n), str(rate), str(seconds)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip


def measure(n: int, seconds: float, rate: float) -> dict[str, float]:
    """Every figure at ``n`` sessions (times in seconds, RSS in bytes per session)."""
    now = time.time_ns()
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        began = time.perf_counter()
        write_fleet(db, n, now)
        wrote = time.perf_counter() - began
        rows_read = read_rows(db)
        began = time.perf_counter()
        serve, http_port = _serve(db)
        try:
            client = Http(http_port)
            while client.get("/healthz")[0] != 200:
                time.sleep(0.01)
            listening = time.perf_counter() - began
            body = last_time_request([0], time.time_ns())
            while client.post("/v1/metrics", body) != 200:
                time.sleep(0.01)
            acknowledged = time.perf_counter() - began
            load_lag = load_gc = 0.0
            while client.get("/readyz")[0] != 200:
                reading = _lag(client)
                load_lag, load_gc = max(load_lag, reading.lag_max), max(load_gc, reading.gc_max)
                time.sleep(0.5)
            ready = time.perf_counter() - began
            reading = _lag(client)
            load_lag, load_gc = max(load_lag, reading.lag_max), max(load_gc, reading.gc_max)
            rss = psutil.Process(serve.pid).memory_info().rss

            # The baseline of the GETs under load: the same generator feeding another serve
            # (an empty database) on this machine, so the GETs share the cores as below but
            # not the event loop with the ingest.
            rng = random.Random(2)
            other, other_port = _serve(Path(tmp) / "other.db")
            try:
                probe = Http(other_port)
                while probe.get("/readyz")[0] != 200:
                    time.sleep(0.05)
                gen = _generator(other_port, n, rate, seconds / 2)
                time.sleep(1.0)  # the generator is running
                elsewhere: list[float] = []
                elsewhere_lists: list[float] = []
                elsewhere_decisions: list[float] = []
                last_slow = time.monotonic()
                while gen.poll() is None:
                    sid = f"session-{rng.randrange(max(n, 1)):08d}"
                    elsewhere.append(client.get(f"/v1/sessions/{sid}")[2])
                    if time.monotonic() - last_slow >= 1.0:
                        last_slow = time.monotonic()
                        elsewhere_lists.append(client.get("/v1/sessions?limit=10")[2])
                        elsewhere_decisions.append(client.get("/v1/decisions")[2])
                    time.sleep(0.01)
                gen.communicate()
            finally:
                other.terminate()
                other.wait(60)

            gen = _generator(http_port, n, rate, seconds)
            # First half: ingest and GET one session only; second half: also a list, the
            # decisions and a scrape every second (what a policy service and Prometheus add).
            gets: list[float] = []
            lists: list[float] = []
            decisions: list[float] = []
            scrapes: list[float] = []
            halfway = time.monotonic() + seconds / 2
            last_slow = halfway
            time.sleep(1.0)  # the generator is running
            quiet_from = _lag(client)
            quiet_to = None
            while gen.poll() is None:
                sid = f"session-{rng.randrange(max(n, 1)):08d}"
                gets.append(client.get(f"/v1/sessions/{sid}")[2])
                if time.monotonic() >= halfway and quiet_to is None:
                    quiet_to = _lag(client)
                    quiet_gets, gets = gets, []
                if quiet_to is not None and time.monotonic() - last_slow >= 1.0:
                    last_slow = time.monotonic()
                    lists.append(client.get("/v1/sessions?limit=10")[2])
                    decisions.append(client.get("/v1/decisions")[2])
                    scrapes.append(client.get("/metrics")[2])
                time.sleep(0.01)
            out, _ = gen.communicate()
            sent = json.loads(out)
            steady = _lag(client)
            assert quiet_to is not None
        finally:
            serve.terminate()
            serve.wait(60)
    print(f"... {n} sessions: database written in {wrote:.1f} s", flush=True)
    return {
        "start-up baseline: every row read (s)": rows_read,
        "start-up: /healthz answers (s)": listening,
        "start-up: an export acknowledged (s)": acknowledged,
        "start-up: /readyz, loaded (s)": ready,
        "loop lag max while loading (ms)": load_lag * 1000,
        "GC pause max while loading (ms)": load_gc * 1000,
        "ingest sent (points/s)": sent["points"] / sent["seconds"],
        "ingest to another serve: GET p50 (ms)": percentile(elsewhere, 0.5) * 1000,
        "ingest to another serve: GET p99 (ms)": percentile(elsewhere, 0.99) * 1000,
        "ingest to another serve: sessions?limit=10 p99 (ms)": percentile(elsewhere_lists, 0.99)
        * 1000,
        "ingest to another serve: decisions p99 (ms)": percentile(elsewhere_decisions, 0.99) * 1000,
        "ingest + GETs: lag worst bucket (ms)": _worst_bucket(quiet_from.lag, quiet_to.lag) * 1000,
        "ingest + GETs: lag probes > 50 ms": _over(quiet_from.lag, quiet_to.lag, 0.05),
        "ingest + GETs: lag probes": quiet_to.lag[INF] - quiet_from.lag[INF],
        "ingest + GETs: GET one session p50 (ms)": percentile(quiet_gets, 0.5) * 1000,
        "ingest + GETs: GET one session p99 (ms)": percentile(quiet_gets, 0.99) * 1000,
        "+ list/decisions/scrape 1/s: lag worst (ms)": _worst_bucket(quiet_to.lag, steady.lag)
        * 1000,
        "+ list/decisions/scrape 1/s: > 50 ms": _over(quiet_to.lag, steady.lag, 0.05),
        "+ list/decisions/scrape 1/s: GET p99 (ms)": percentile(gets, 0.99) * 1000,
        "under load: full GC collections": steady.gc_full[INF] - quiet_from.gc_full[INF],
        "under load: full GCs > 50 ms": _over(quiet_from.gc_full, steady.gc_full, 0.05),
        "under load: full GC worst bucket (ms)": _worst_bucket(quiet_from.gc_full, steady.gc_full)
        * 1000,
        "sessions?limit=10 p99 (ms)": percentile(lists, 0.99) * 1000,
        "decisions p99 (ms)": percentile(decisions, 0.99) * 1000,
        "/metrics scrape p99 (ms)": percentile(scrapes, 0.99) * 1000,
        "RSS once loaded (MB)": rss / 1e6,
        "RSS per session (bytes)": rss / n if n else float("nan"),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--generate":
        port, n, rate, seconds = sys.argv[2:6]
        generate(int(port), int(n), float(rate), float(seconds))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--rate", type=float, default=10_000.0, help="data points/s")
    args = ap.parse_args()
    sizes = [0, *args.sessions]
    columns = [measure(n, args.seconds, args.rate) for n in sizes]
    empty = columns[0]["RSS once loaded (MB)"]
    for n, c in zip(sizes, columns, strict=True):  # what a session adds to the empty process
        c["RSS per session over the empty (bytes)"] = (
            (c["RSS once loaded (MB)"] - empty) * 1e6 / n if n else float("nan")
        )
    print(f"\nlastactive serve at N sessions (0: the baseline, an empty database; "
          f"{args.rate:g} points/s for {args.seconds:g} s)")  # fmt: skip
    print(f"{'':40}" + "".join(f"{n:>12}" for n in sizes))
    for name in columns[0]:
        print(f"{name:40}" + "".join(f"{c[name]:12.3f}" for c in columns))


if __name__ == "__main__":
    main()
