"""The one helper module every test may import (``conftest.py`` holds fixtures only):

* collectors to test against: :class:`InProcessCollector` (the real servers on a thread of the
  test process, started in milliseconds) and :class:`Collector` (a ``lastactive serve``
  process, for restarts, kills and the server's own memory), both :class:`CollectorClient` s;
* :func:`wait_for` (poll a real process's observable state with a deadline), free ports,
  stopping third-party servers, reading a real terminal (:func:`read_until`);
* OTLP requests built by hand with explicit timestamps (ns): :func:`metrics_request`,
  :func:`otlp_json`, :func:`last_input`;
* the dashboards the generator renders (:func:`generated`, :func:`boards`, :func:`targets`);
* a real PostgreSQL server in a temp dir (:class:`PostgresServer`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from lastactive.collector import Bound, Settings, SqliteStore, Store, serve
from lastactive.collector._record import Counted, EntityRecord, StreamRecord
from lastactive.collector._sliced import Sliced
from lastactive.collector._state import EntityView
from lastactive.collector.policy import DecisionsBuilder
from lastactive.collector.proto import query_pb2, query_pb2_grpc

RUN = [sys.executable, "-m", "lastactive", "run"]
"""``lastactive run`` as a real process."""
PROTO = {"Content-Type": "application/x-protobuf"}
DASHBOARDS = Path(__file__).parents[1] / "dashboards"

_READY = re.compile(
    r"on 127\.0\.0\.1:(\d+)(?: \(TLS\))?, OTLP/HTTP and query HTTP on https?://127\.0\.0\.1:(\d+)"
)


class CollectorClient:
    """Talks to a collector at ``grpc_port`` / ``http_port`` on loopback (HTTP JSON and gRPC)."""

    grpc_port: int = 0
    http_port: int = 0

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        req = urllib.request.Request(self.http + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("content-type", "")

    def session(self, sid: str) -> dict[str, Any] | None:
        status, body = self.get(f"/v1/sessions/{sid}")
        return body if status == 200 else None

    def grpc_stub(self) -> tuple[grpc.Channel, query_pb2_grpc.ActivityQueryStub]:
        channel = grpc.insecure_channel(self.grpc_target)
        return channel, query_pb2_grpc.ActivityQueryStub(channel)

    def grpc_session(self, sid: str) -> query_pb2.Entity:
        channel, stub = self.grpc_stub()
        with channel:
            return stub.GetSession(query_pb2.GetRequest(id=sid), timeout=10)


class Collector(CollectorClient):
    """A ``lastactive serve`` process (``python -P -m lastactive serve`` on ports 0, a 0.2 s
    flush interval). ``start()`` waits for its ready line. For what needs a real process: a
    restart, a SIGKILL, the server's own memory, the command line."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.db = db
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.grpc_port = self.http_port = 0
        # Its log goes to a file, not a pipe nobody reads while it runs: a full pipe would
        # block the server's logging, and with it its event loop.
        self._log = tempfile.TemporaryFile("a+")  # noqa: SIM115 (appended: the offset is shared)

    def start(self) -> Collector:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-P",
                "-m",
                "lastactive",
                "serve",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--db",
                str(self.db),
                "--flush-interval",
                "0.2",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = _READY.search(line)
        if not match:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"no ready line: {line!r} {self.log()!r}")
        self.grpc_port, self.http_port = int(match[1]), int(match[2])
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.proc.stdout.close()  # type: ignore[union-attr]
        return code

    def log(self) -> str:
        """What the process wrote to stderr so far (its log)."""
        self._log.seek(0)
        return self._log.read()


class InProcessCollector(CollectorClient):
    """:func:`~lastactive.collector.serve` on a thread of this process (ports 0, its own event
    loop): the real servers, started in milliseconds. ``store`` defaults to an in-memory SQLite
    database; ``clock`` is ns since the epoch; ``start`` returns once the stored state is
    loaded, or with ``wait_loaded=False`` once the ports listen."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        clock: Callable[[], int] = time.time_ns,
        http_port: int = 0,
        wait_loaded: bool = True,
        **settings: Any,
    ) -> None:
        self.settings = Settings(
            host="127.0.0.1", grpc_port=0, http_port=http_port, db=":memory:", **settings
        )
        self.store = store if store is not None else SqliteStore(":memory:")
        self.clock = clock
        self._wait_loaded = wait_loaded
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._failed: BaseException | None = None

    def start(self) -> InProcessCollector:
        ready = threading.Event()

        def bound(b: Bound) -> None:
            self.grpc_port, self.http_port = b.grpc_port, b.http_port
            ready.set()

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            announce = {"ready" if self._wait_loaded else "listening": bound}
            await serve(self.settings, store=self.store, clock=self.clock, stop=self._stop,
                        **announce)  # fmt: skip

        def run() -> None:
            try:
                asyncio.run(main())
            except BaseException as exc:
                self._failed = exc
                ready.set()

        self._thread = threading.Thread(target=run, name="in-process-collector", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self._failed is not None or not self.http_port:
            raise AssertionError(f"the in-process collector did not start: {self._failed!r}")
        return self

    def stop(self) -> None:
        """Stop the servers (the last flush included) and wait for the thread."""
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(30)
            assert not self._thread.is_alive(), "the in-process collector did not stop"
            self._thread = None


def decisions_evaluations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the views every :class:`DecisionsBuilder` evaluates from now on (in order)."""
    evaluated: list[str] = []
    add = DecisionsBuilder.add

    def counting(self: DecisionsBuilder, v: EntityView) -> None:
        evaluated.append(v.id)
        add(self, v)

    monkeypatch.setattr(DecisionsBuilder, "add", counting)
    return evaluated


def metric(c: CollectorClient, name: str) -> float:
    """The value of the unlabelled series ``name`` on the collector's ``/metrics``.

    Raises:
        AssertionError: it is not exposed.
    """
    with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not exposed")


def sse_events(lines: Iterable[bytes]) -> Iterator[tuple[str | None, str, Any]]:
    """Server-Sent Events read from a response's lines: ``(id, event, data as JSON)``."""
    event_id, name = None, ""
    for raw in lines:
        line = raw.decode().rstrip("\n")
        if line.startswith("id: "):
            event_id = line[4:]
        elif line.startswith("event: "):
            name = line[7:]
        elif line.startswith("data: "):
            yield event_id, name, json.loads(line[6:])
            event_id = None


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll a real process's observable state until ``predicate`` is truthy (returns it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM a third-party program (a server the test started), SIGKILL if it lingers: how it
    shuts down is not what the test is about."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A loopback TCP port free right now, for programs that cannot bind port 0 and report it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """True when something accepts connections on loopback ``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- real terminals -------------------------------------------------------------------


@contextlib.contextmanager
def shell_under_run(
    collector: CollectorClient,
    env: dict[str, str],
    session_id: str,
    *,
    prefix: tuple[str, ...] = (),
    term: str = "dumb",
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """``lastactive run -- bash -i`` (prompt ``READY> ``) in a real PTY reporting to
    ``collector``, started through ``prefix`` (``faketime ...``); yields the master end and the
    process once the prompt shows, and ends it (``exit``, else a kill). ^C reaches the shell's
    jobs however the test was started (``env --default-signal=INT``)."""
    env = {**env, "PS1": "READY> ", "TERM": term}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [*prefix, "env", "--default-signal=INT", *RUN, "--session-id", session_id,
         "--endpoint", f"http://{collector.grpc_target}",
         "--", "bash", "--norc", "--noprofile", "-i"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        read_until(master, b"READY> ")
        yield master, proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                os.write(master, b"exit 0\r")
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        os.close(master)
        os.close(slave)


def read_until(fd: int, needle: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while needle not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not in {buf!r}")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            buf += chunk
    return buf


# --- OTLP requests built by hand, with explicit timestamps (ns) --------------------------

S = 1_000_000_000


def kv(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            val = AnyValue(bool_value=v)
        elif isinstance(v, int):
            val = AnyValue(int_value=v)
        elif isinstance(v, float):
            val = AnyValue(double_value=v)
        else:
            val = AnyValue(string_value=v)
        out.append(KeyValue(key=k, value=val))
    return out


def sum_point(value: int, t: int, start: int, **attrs: Any) -> metrics_pb2.NumberDataPoint:
    return metrics_pb2.NumberDataPoint(
        as_int=value, time_unix_nano=t, start_time_unix_nano=start, attributes=kv(attrs)
    )


def metrics_request(
    session_id: str,
    *,
    sums: dict[str, list[metrics_pb2.NumberDataPoint]] | None = None,
    gauges: dict[str, list[metrics_pb2.NumberDataPoint]] | None = None,
    host_id: str = "host-a",
) -> ExportMetricsServiceRequest:
    metrics = [
        metrics_pb2.Metric(
            name=name,
            sum=metrics_pb2.Sum(
                data_points=points,
                is_monotonic=True,
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            ),
        )
        for name, points in (sums or {}).items()
    ] + [
        metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))
        for name, points in (gauges or {}).items()
    ]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={
                    "attributes": kv(
                        {"session.id": session_id, "host.id": host_id, "service.name": "test"}
                    )
                },
                scope_metrics=[metrics_pb2.ScopeMetrics(scope={"name": "t"}, metrics=metrics)],
            )
        ]
    )


def otlp_json(session_id: str, t_ns: int) -> dict[str, Any]:
    """Hand-written OTLP/JSON: hex ids, int64 as strings, enum as an integer."""
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "session.id", "value": {"stringValue": session_id}},
                        {"key": "host.id", "value": {"stringValue": "json-host"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "hand"},
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "parentSpanId": "eee19b7ec3c1b173",
                                "name": "keystrokes",
                                "kind": 2,
                                "startTimeUnixNano": str(t_ns - S),
                                "endTimeUnixNano": str(t_ns),
                                "attributes": [
                                    {"key": "lastactive.source", "value": {"stringValue": "input"}},
                                    {"key": "n", "value": {"intValue": "42"}},
                                ],
                                "unknownFieldIsIgnored": True,
                            }
                        ],
                    }
                ],
            }
        ]
    }


def last_input(
    collector: CollectorClient,
    sid: str,
    seconds_ago: float,
    host: str | None = None,
    now: int | None = None,
) -> None:
    """Session ``sid`` (on ``host``, default ``h-<sid>``) had input ``seconds_ago`` before
    ``now`` (ns; default: the real time)."""
    now = time.time_ns() if now is None else now
    t = now - int(seconds_ago * S)
    req = metrics_request(sid, host_id=host or f"h-{sid}", gauges={"lastactive.source.last_time": [
        sum_point(0, now, 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S
    assert collector.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200


# --- dashboards ---------------------------------------------------------------------------


def generated() -> dict[str, str]:
    spec = importlib.util.spec_from_file_location("generate", DASHBOARDS / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rendered: dict[str, str] = module.render()
    return rendered


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads((DASHBOARDS / name).read_text()) for name in generated()}


def targets() -> Iterator[tuple[str, str, str]]:
    for name, board in boards().items():
        for panel in board["panels"]:
            for target in panel["targets"]:
                yield name, panel["title"], target["expr"]


T = TypeVar("T")


def slices_of(work: Sliced[T]) -> tuple[int, T]:
    """How many slices ``work`` yielded (:mod:`lastactive.collector._sliced`), and its result."""
    slices = 0
    while True:
        try:
            next(work)
        except StopIteration as done:
            return slices, done.value
        slices += 1


class LoopTurns:
    """Within ``async with``, :attr:`count` counts the turns of the event loop: another task
    adds one each time it runs."""

    def __init__(self) -> None:
        self.count = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            self.count += 1
            await asyncio.sleep(0)

    async def __aenter__(self) -> LoopTurns:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._task is not None
        self._task.cancel()


async def turns_while(work: Awaitable[T]) -> tuple[int, T]:
    """How many times another task ran while ``work`` was awaited (the loop was free between
    its slices), and its result."""
    async with LoopTurns() as turns:
        began = turns.count
        out = await work
    return turns.count - began, out


class GatedStore(SqliteStore):
    """A SQLite store whose ``load_page`` waits for ``gate`` (a start-up load in progress)."""

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()

    def load_page(
        self, after: tuple[str, str] | None, size: int
    ) -> tuple[list[EntityRecord], tuple[str, str] | None]:
        if not self.gate.wait(30):
            raise TimeoutError("the test never opened the gate")
        return super().load_page(after, size)


class FlakyStore(SqliteStore):
    """An in-memory SQLite store whose next ``fail`` saves raise (a full disk)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.fail = 0

    def save(
        self,
        records: Sequence[EntityRecord],
        streams: Sequence[StreamRecord] = (),
        counted: Counted | None = None,
    ) -> int:
        if self.fail:
            self.fail -= 1
            raise OSError("disk full")
        return super().save(records, streams, counted)


# --- a real PostgreSQL ------------------------------------------------------------------


def _postgres_bin() -> Path | None:
    """The directory of the newest installed PostgreSQL's server programs (Debian keeps them
    under /usr/lib/postgresql/VERSION/bin), or ``None``."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: p.parts)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return None if initdb is None else Path(initdb).resolve().parent


class PostgresServer:
    """A throwaway PostgreSQL server: ``initdb`` in a temp dir, listening on a free loopback
    port and a Unix socket in that dir, run as the ``postgres`` user when the test runs as root
    (the server refuses root; the Debian package creates that user).

    Args:
        fsync: off by default: the tests kill lastactive, never the database (benchmarks turn
            it on, to measure real commits).
    Raises:
        FileNotFoundError: PostgreSQL is not installed (``.ci/run`` installs it).
    """

    def __init__(self, *, fsync: bool = False) -> None:
        self.fsync = fsync
        bindir = _postgres_bin()
        if bindir is None:
            raise FileNotFoundError("PostgreSQL is not installed (Debian package postgresql)")
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="lastactive-pg-"))
        self.port = free_port()
        self.user = "lastactive"
        self.proc: subprocess.Popen[bytes] | None = None
        # As root, the server runs as ``postgres`` through setpriv rather than Popen's user=:
        # changing ids makes subprocess fork() instead of vfork(), which runs gRPC's fork
        # handlers in the child; a poller they restart dies on the descriptors close_fds
        # closes, and the child with it, before exec (seen in CI restarting a halted server
        # under an in-process collector).
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as = ["setpriv", "--reuid=postgres", "--regid=postgres", "--clear-groups"]

    def start(self) -> PostgresServer:
        """Start the server (after :meth:`halt`: again on the same data and port)."""
        data = self.dir / "data"
        log = (self.dir / "server.log").open("ab")
        if not data.exists():
            subprocess.run(
                [*self._as, self.bindir / "initdb", "-D", data, "-U", self.user, "-A", "trust",
                 "-E", "UTF8", "--locale=C", "--no-sync"],
                check=True, capture_output=True, cwd=self.dir,
            )  # fmt: skip
        self.proc = subprocess.Popen(
            [*self._as, self.bindir / "postgres", "-D", data, "-p", str(self.port), "-k", self.dir,
             "-c", "listen_addresses=127.0.0.1", "-c", f"fsync={'on' if self.fsync else 'off'}",
             "-c", f"full_page_writes={'on' if self.fsync else 'off'}",
             "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=log, cwd=self.dir,
        )  # fmt: skip
        log.close()
        import psycopg

        def accepting() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {(self.dir / 'server.log').read_text()}")
            try:
                psycopg.connect(self.url("postgres"), connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        wait_for(accepting, 30, "PostgreSQL accepting connections")
        return self

    def url(self, database: str, schema: str | None = None) -> str:
        """A connection URL to ``database`` (its ``schema`` first on the search path)."""
        options = "" if schema is None else f"?options=-csearch_path%3D{schema}"
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}{options}"

    def create_database(self, name: str) -> str:
        """A new empty database ``name``; returns its URL."""
        import psycopg

        with psycopg.connect(self.url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]  # a test's name
        return self.url(name)

    def halt(self) -> None:
        """Stop the server, keeping its data (a database outage)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: clients are cut
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self) -> None:
        """Stop the server and remove its files."""
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)
