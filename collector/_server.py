"""``lastactive serve``: wire state, store, flusher and the two servers on one event loop."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import sqlite3
import ssl
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn

from lastactive.collector._admission import Admission
from lastactive.collector._auth import AuthFileError, Credentials
from lastactive.collector._clocks import ReporterClocks
from lastactive.collector._core import Core, in_memory
from lastactive.collector._flusher import Flusher
from lastactive.collector._freeze import freezing
from lastactive.collector._grpc_edge import start_grpc
from lastactive.collector._http import create_app
from lastactive.collector._ingest import Ingest
from lastactive.collector._lag import LoopLag, Pauses
from lastactive.collector._logging import configure_logging
from lastactive.collector._metrics import registry_for
from lastactive.collector._replica import Replica, default_name
from lastactive.collector._startup import StateLoader
from lastactive.collector._state import NANOS, ActivityState, Entity
from lastactive.collector._tls import ServerTls, TlsFiles
from lastactive.collector._transitions import TICK_S, TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy, PolicyError, load_policy
from lastactive.collector.settings import (
    ConfigFileError,
    Settings,
    load_settings,
    settings_toml,
)
from lastactive.collector.store import Store, open_store, without_password

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Bound:
    """Where the servers listen once started."""

    host: str
    grpc_port: int
    http_port: int
    tls: bool = False

    def line(self, db: str) -> str:
        scheme = "https" if self.tls else "http"
        return (
            f"lastactive serving OTLP/gRPC and query gRPC on {self.host}:{self.grpc_port}"
            f"{' (TLS)' if self.tls else ''}, OTLP/HTTP and query HTTP on "
            f"{scheme}://{self.host}:{self.http_port} (db {db})"
        )


def _warn_skewed(clocks: ReporterClocks) -> None:
    """Log each reporter whose clock offset went beyond the tolerance since the last call."""
    for c in clocks.newly_skewed:
        service, instance, host, session = c.key
        _log.warning(
            "reporter clock offset %+.1f s (service.name=%s service.instance.id=%s host.id=%s "
            "session.id=%s) is beyond LASTACTIVE_MAX_CLOCK_SKEW: its timestamps are corrected",
            c.offset / NANOS, service, instance, host, session,
        )  # fmt: skip
    clocks.newly_skewed.clear()


def _forgetting(
    engine: TransitionEngine, clocks: ReporterClocks
) -> Callable[[int, list[Entity]], None]:
    """What the retention purge tells the rest of the core: the transition engine forgets the
    purged entities, the reporter clocks the reporters long silent."""

    def on_purge(now: int, gone: list[Entity]) -> None:
        engine.forget(gone)
        clocks.purge(now)

    return on_purge


async def _tick(core: Core, stop: asyncio.Event) -> None:
    """Every TICK_S: evaluate what changed (in slices, yielding to the loop between them),
    push the transitions to the watchers; warn of reporters whose clocks went off."""
    while not stop.is_set():
        await asyncio.sleep(TICK_S)
        _warn_skewed(core.ingest.clocks)
        try:
            await core.catch_up()
        except Exception:  # a bug here must not stop ingest or queries
            _log.exception("transition tick failed")


class ExposedError(RuntimeError):
    """``serve`` would listen beyond loopback without credentials and TLS (no ``--insecure``)."""


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: ``serve`` owns shutdown (and the last flush)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Callable[[], int] = time.time_ns,
    ready: Callable[[Bound], None] | None = None,
    stop: asyncio.Event | None = None,
    listening: Callable[[Bound], None] | None = None,
) -> None:
    """Run the collector until ``stop`` is set (or SIGINT/SIGTERM), then flush and close.

    The counter baselines load first, then both servers listen (exports are acknowledged from
    then on) while the stored entities load, so restarts keep every timestamp; reads wait for
    the load (:mod:`lastactive.collector._startup`).

    Args:
        settings: ports, bind address, database, limits.
        store: default :func:`open_store` of ``settings.store`` (PostgreSQL) or ``settings.db``
            (SQLite).
        clock: ns since the epoch, UTC.
        ready: called once both servers listen and the stored state is loaded, with the bound
            ports.
        listening: called once both servers listen (the state may still be loading).
    Raises:
        OSError: a port cannot be bound, a TLS file cannot be read (``ssl.SSLError``).
        sqlite3.Error, StoreError: the database cannot be opened.
        PolicyError: the policy file is invalid.
        AuthFileError: the auth file is invalid. ExposedError: the bind is beyond loopback
        without credentials and TLS, and ``settings.insecure`` is not set.
    """
    exposed = settings.exposure()
    if exposed is not None and not settings.insecure:
        raise ExposedError(
            f"refusing to serve {settings.host} without {exposed}: anyone who can reach it "
            f"could forge activity or read every session. Configure them (README, "
            f'"Deployment"), bind 127.0.0.1, or pass --insecure'
        )
    if exposed is not None:
        _log.warning("serving %s without %s (--insecure)", settings.host, exposed)
    policy = load_policy(settings.policy) if settings.policy else Policy()
    with contextlib.ExitStack() as stack:
        if store is None:
            if settings.store is None:  # replicas may share a PostgreSQL store, not a file
                stack.enter_context(_single_serve(settings.db))
            store = open_store(settings.db, settings.store)
        # Full GC collections walk only what is new; every collection is timed.
        gc_pauses = stack.enter_context(freezing())
        await _serve(
            settings, store, policy, clock, (listening, ready), stop,
            insecure=exposed is not None, gc_pauses=gc_pauses,
        )  # fmt: skip


@contextlib.contextmanager
def _single_serve(db: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<db>.lock`` while serving: a second ``serve`` on the same
    database would answer from its own memory and overwrite the first one's commits.

    Raises:
        RuntimeError: another process serves this database.
    """
    if str(db) == ":memory:":
        yield
        return
    db.parent.mkdir(parents=True, exist_ok=True)
    with Path(f"{db}.lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RuntimeError(
                f"{db} is already served by {holder}; stop it first, or give this one another --db"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()}\n")
        lock.flush()
        yield


async def _serve(
    settings: Settings,
    store: Store,
    policy: Policy,
    clock: Callable[[], int],
    announce: tuple[Callable[[Bound], None] | None, Callable[[Bound], None] | None],
    stop: asyncio.Event | None,
    *,
    insecure: bool,
    gc_pauses: tuple[Pauses, ...] = (),
) -> None:
    state = ActivityState(
        max_skew_ns=int(settings.max_clock_skew * NANOS),
        started_at=clock(),
        max_entities=settings.max_entities,
    )
    ingest = Ingest(state, clock)
    replica = _replica(store, settings, state, clock)
    if replica is None:  # replicas' stores count byte streams against their stored points
        state.load_streams(store.load_streams())  # entities load once the ports are open
    engine = TransitionEngine(state, policy, clock, None if replica is None else replica.owns)
    flusher = Flusher(
        state,
        store,
        settings.flush_interval,
        retention_ns=int(settings.retention * NANOS),
        clock=clock,
        on_purge=_forgetting(engine, ingest.clocks),
        release=lambda budget: state.release(budget) | ingest.clocks.release(budget),
        synchronous=settings.synchronous_commit,
    )
    loader = StateLoader(store, state, engine, clock) if replica is None else replica
    lag = LoopLag()
    tls = None
    if settings.tls_cert is not None and settings.tls_key is not None:
        tls = ServerTls(TlsFiles(settings.tls_cert, settings.tls_key, settings.tls_client_ca))
    core = Core(
        ingest,
        policy,
        engine,
        WatchHub(max_subscribers=settings.max_watchers),
        clock,
        durable=flusher.durable,
        admission=Admission(settings.max_inflight_requests, settings.max_inflight_bytes),
        credentials=Credentials(settings.auth_file),
        unready=lambda: flusher.failure or loader.loading(),
        loading=loader.loading,
        replica=replica,
        fetch=in_memory if replica is None else replica.fetch,
    )
    if stop is None:
        stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, _reload, core.credentials, tls)

    sock = listening_socket(settings.host, settings.http_port)
    _, grpc_port, stop_grpc = await start_grpc(
        settings.host, settings.grpc_port, core, settings.max_request_bytes,
        None if tls is None else tls.grpc_credentials(), loader.loaded,
    )  # fmt: skip
    tls_options: dict[str, Any] = {}
    if tls is not None:
        context = tls.http_context
        tls_options["ssl_context_factory"] = lambda config, default: context
        if settings.tls_client_ca is not None:
            tls_options["http"] = tls.http_protocol()
    http = _Uvicorn(
        uvicorn.Config(
            create_app(
                core,
                settings.max_request_bytes,
                registry_for(
                    core,
                    flusher,
                    settings.metrics_top_sessions,
                    insecure=insecure,
                    lag=lag,
                    gc_pauses=gc_pauses,
                ),
            ),
            **tls_options,
            log_config=None,  # our handlers (collector/_logging.py)
            access_log=settings.access_log,
            lifespan="off",
            # Watch streams end when the hub closes; one whose client does not read is
            # cut after this (SIGTERM must stop the service within 0.5 s).
            timeout_graceful_shutdown=0.1,  # type: ignore[arg-type]  # a float works
        )
    )
    http_task = asyncio.create_task(http.serve(sockets=[sock]), name="lastactive-http")
    flusher.start()
    if isinstance(loader, StateLoader):
        loading = asyncio.create_task(loader.run(), name="lastactive-load")
        ticking = _tick(core, stop)
    else:  # the replica takes its shards, then ticks over them
        loading = asyncio.create_task(_loaded(loader), name="lastactive-load")
        ticking = loader.run(engine, core.hub, stop)
    ticker = asyncio.create_task(ticking, name="lastactive-transitions")
    stopping = asyncio.create_task(stop.wait(), name="lastactive-stop")
    probe = asyncio.create_task(lag.run(), name="lastactive-loop-lag")
    try:
        while not http.started:
            if http_task.done():
                await http_task  # raises the startup error
                raise RuntimeError("HTTP server stopped during start-up")
            await asyncio.sleep(0.01)
        bound = Bound(settings.host, grpc_port, sock.getsockname()[1], tls is not None)
        listening, ready = announce
        if listening is not None:
            listening(bound)
        await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if loading.done():
            loading.result()  # raises a failed load
            if ready is not None:
                ready(bound)
        await stopping
    finally:
        core.hub.close()  # ends every watch stream, so both servers stop at once
        http.should_exit = True
        stop.set()
        if replica is not None:
            await _quietly(ticker)  # a replica emits what is left and releases its leases
        for task in (ticker, stopping, probe):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await _quietly(loading)  # a failed load was raised above
        await asyncio.gather(stop_grpc(), _quietly(http_task))
        await flusher.stop()
        store.close()
        sock.close()


def _replica(
    store: Store, settings: Settings, state: ActivityState, clock: Callable[[], int]
) -> Replica | None:
    """This process's part among replicas sharing ``store`` (a PostgreSQL one), else None."""
    postgres = sys.modules.get("lastactive.collector._postgres")  # imported if store is one
    if postgres is None or not isinstance(store, postgres.PostgresStore):
        return None
    from lastactive.collector._pg_cluster import PostgresCluster

    cluster = PostgresCluster(store, settings.replica or default_name(), settings.lease)
    store.additive_io = state.additive_io = True  # several replicas count bytes
    return Replica(cluster, state, clock)


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (0: any free port) for the HTTP server.

    Made with ``IPPROTO_TCP`` named: asyncio sets ``TCP_NODELAY`` on the connections it accepts
    only when the listening socket says TCP (``proto``), and without it a small response waits
    for Nagle's algorithm and the client's delayed ACK (~40 ms per request; issue 15).

    Raises:
        OSError: the address cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def _reload(credentials: Credentials, tls: ServerTls | None) -> None:
    """SIGHUP: re-read the auth file and the TLS files; what cannot be read is logged and the
    old one kept. Open connections and streams are not touched."""
    try:
        credentials.reload()
        if credentials.enabled:
            _log.warning("SIGHUP: %d credentials loaded from %s", len(credentials),
                         credentials.path)  # fmt: skip
    except AuthFileError as exc:
        _log.error("SIGHUP: keeping the credentials in force: %s", exc)
    if tls is not None:
        try:
            tls.reload()
            _log.warning("SIGHUP: TLS certificate reloaded from %s", tls.files.cert)
        except (OSError, ssl.SSLError) as exc:
            _log.error("SIGHUP: keeping the TLS certificate in force: %s", exc)


async def _loaded(replica: Replica) -> None:
    await replica.loaded.wait()


async def _quietly(task: asyncio.Task[Any]) -> None:
    with contextlib.suppress(Exception):
        await task


def serve_command(
    overrides: Mapping[str, Any], config: str | None = None, print_config: bool = False
) -> int:
    """``lastactive serve``: run until SIGTERM/SIGINT with the settings in force
    (:func:`~lastactive.collector.settings.load_settings`: the flags given as ``overrides``,
    ``LASTACTIVE_*``, the TOML file ``config``, the defaults); with ``print_config``, print them
    as a TOML file instead.

    Returns:
        0 after a clean stop; 1 when a port cannot be bound or the database cannot be used; 2
        for invalid settings, configuration file or policy file (the message says which key).
    """
    from pydantic import ValidationError

    try:
        settings = load_settings(dict(overrides), None if config is None else Path(config))
    except ConfigFileError as exc:
        print(f"lastactive serve: invalid configuration file: {exc}", file=sys.stderr)
        return 2
    except ValidationError as exc:
        print(f"lastactive serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    if print_config:
        sys.stdout.write(settings_toml(settings))
        return 0
    configure_logging(settings.log_level, settings.log_format, settings.access_log)
    where = str(settings.db) if settings.store is None else without_password(settings.store)
    try:
        asyncio.run(serve(settings, ready=lambda bound: print(bound.line(where), flush=True)))
    except PolicyError as exc:
        print(f"lastactive serve: invalid policy: {exc}", file=sys.stderr)
        return 2
    except AuthFileError as exc:
        print(f"lastactive serve: invalid auth file: {exc}", file=sys.stderr)
        return 2
    except ExposedError as exc:
        print(f"lastactive serve: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, sqlite3.Error) as exc:  # a port in use, an unusable database
        print(f"lastactive serve: {exc}", file=sys.stderr)
        return 1
    return 0
