"""The ``lastactive`` command: ``serve``, ``run``, ``ls``.

The CLI only parses arguments and delegates: ``serve`` to :func:`~.collector.serve`,
``run`` to :func:`lastactive.instrumentation.run`, ``ls`` to :mod:`lastactive.collector._ls`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Sequence

_SERVE_FLAGS = {
    # flag: (Settings field, type, help)
    "--host": ("host", str, "bind address (LASTACTIVE_HOST, default 127.0.0.1)"),
    "--grpc-port": ("grpc_port", int, "OTLP/gRPC + query gRPC port (LASTACTIVE_GRPC_PORT, 4317)"),
    "--http-port": ("http_port", int, "OTLP/HTTP + query HTTP port (LASTACTIVE_HTTP_PORT, 4318)"),
    "--db": ("db", str, "SQLite file (LASTACTIVE_DB, default in the user's state directory)"),
    "--flush-interval": ("flush_interval", float, "seconds between flushes (default 1)"),
    "--max-request-bytes": ("max_request_bytes", int, "request size limit (default 64 MiB)"),
    "--max-clock-skew": ("max_clock_skew", float, "seconds of future skew allowed (default 10)"),
    "--retention": ("retention", float, "seconds ended sessions are kept (default 86400)"),
    "--policy": ("policy", str, "idle policy file, TOML (LASTACTIVE_POLICY)"),
    "--metrics-top-sessions": (
        "metrics_top_sessions",
        int,
        "per-session series on /metrics beyond runaway/stuck (20)",
    ),
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lastactive",
        description="OpenTelemetry-based activity tracking: who uses a session, and how long "
        "has it been idle.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the collector (OTLP in, activity state out)")
    for flag, (_, typ, text) in _SERVE_FLAGS.items():
        serve.add_argument(flag, type=typ, help=text)
    serve.add_argument("-v", "--verbose", action="store_true", help="log at INFO")

    run = sub.add_parser("run", help="run a command in a pseudo-terminal and report activity")
    run.add_argument("--session-id", help="session.id (default LASTACTIVE_SESSION_ID or random)")
    run.add_argument(
        "--endpoint", help="collector OTLP endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT)"
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    hook = sub.add_parser("hook", help="report an agent's hook events (reads stdin)")
    hook.add_argument("agent", choices=["claude"], help="whose hook payloads: Claude Code")
    hook.add_argument("--url", default=None, help="collector HTTP URL (LASTACTIVE_URL)")

    lease = sub.add_parser("lease", help="hold a busy lease on a session while CMD runs")
    lease.add_argument(
        "--ttl",
        required=True,
        type=_duration,
        help="lease lifetime from each renewal: 90s, 30m, 2h or seconds",
    )
    lease.add_argument("--session-id", help="session.id (default LASTACTIVE_SESSION_ID)")
    lease.add_argument("--endpoint", help="collector OTLP endpoint")
    lease.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    tmux = sub.add_parser("tmux", help="print (or --install) tmux hooks reporting clients")
    tmux.add_argument("--install", action="store_true", help="set them on the running server")
    tmux.add_argument("--url", default=None, help="collector HTTP URL the hooks report to")

    tmux_event = sub.add_parser("tmux-event", help="what the tmux hooks run (internal)")
    tmux_event.add_argument("--url", default=None)
    tmux_event.add_argument("event", choices=["attached", "detached", "session-changed"])

    host = sub.add_parser("host", help="report this host's boot, logins and user input")
    host.add_argument("--interval", type=float, default=None, help="seconds between checks")
    host.add_argument("--once", action="store_true", help="check once, report, exit")
    host.add_argument("--endpoint", help="collector OTLP endpoint")

    cull = sub.add_parser("cull", help="hibernate what the idle policy says (reference client)")
    cull.add_argument("--url", default=None, help="collector HTTP URL (LASTACTIVE_URL)")
    action = cull.add_mutually_exclusive_group()
    action.add_argument(
        "--command",
        dest="action_command",  # not "command": that is the subcommand's name
        help="run per decision; {kind} {id} {host_id} filled in",
    )
    action.add_argument("--http", help="POST each decision as JSON to this URL")
    cull.add_argument("--dry-run", action="store_true", help="only log what would be done")
    cull.add_argument("--concurrency", type=int, default=10, help="actions at once (10)")
    cull.add_argument("--interval", type=float, default=10.0, help="seconds between rounds")
    cull.add_argument("--once", action="store_true", help="one round, then exit")

    proxy = sub.add_parser("proxy", help="relay TCP (raw or VNC/RFB) and report who uses it")
    proxy.add_argument("--listen", required=True, type=_address, help="HOST:PORT to accept on")
    proxy.add_argument("--target", required=True, type=_address, help="HOST:PORT to relay to")
    proxy.add_argument(
        "--protocol",
        choices=["raw", "rfb", "websocket"],
        default="raw",
        help="rfb: only VNC key, pointer and clipboard input is engagement",
    )
    proxy.add_argument("--session-id", help="session.id (default proxy:<target>)")
    proxy.add_argument("--endpoint", help="collector OTLP endpoint")

    ls = sub.add_parser("ls", help="list sessions, most recently active first")
    ls.add_argument(
        "--url",
        default=os.environ.get("LASTACTIVE_URL"),
        help="collector HTTP URL (LASTACTIVE_URL; default from LASTACTIVE_HOST/HTTP_PORT)",
    )
    ls.add_argument("--host", dest="host_id", help="only sessions on this host.id")
    ls.add_argument("--limit", type=int, default=0, help="at most this many")
    ls.add_argument("--json", action="store_true", help="print the API's JSON")
    return parser


def _duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``2h`` -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    try:
        if text and text[-1] in units:
            value = float(text[:-1]) * units[text[-1]]
        else:
            value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (use 90s, 30m, 2h)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` -> (host, port)."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _proxy(args: argparse.Namespace) -> int:
    import signal

    _quiet_logging()
    from lastactive.instrumentation import Reporter
    from lastactive.instrumentation._proxy import ProxyInstrument
    from lastactive.instrumentation._proxy_relay import serve_proxy, serve_websocket

    reporter = Reporter(service_name="lastactive-proxy", endpoint=args.endpoint)
    target = f"{args.target[0]}:{args.target[1]}"
    # A WebSocket front classifies RFB inside when the target greets with it (noVNC).
    inner = "auto" if args.protocol == "websocket" else args.protocol
    instrument = ProxyInstrument(reporter, args.session_id or f"proxy:{target}", inner)
    serve = serve_websocket if args.protocol == "websocket" else serve_proxy

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(port: int) -> None:
            print(
                f"lastactive proxy on {args.listen[0]}:{port} -> {target} ({args.protocol})",
                flush=True,
            )

        await serve(
            args.listen,
            args.target,
            instrument,
            ready=ready,
            stop=stop,
        )

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"lastactive proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        reporter.shutdown(2.0)
    return 0


def _http_url(url: str | None) -> str:
    """The collector's HTTP URL: the flag, ``LASTACTIVE_URL``, or the default port."""
    return url or os.environ.get("LASTACTIVE_URL") or "http://127.0.0.1:4318"


def _quiet_logging() -> None:
    """Reporters must not scribble on the terminal: log to LASTACTIVE_LOG_FILE or nowhere."""
    log_file = os.environ.get("LASTACTIVE_LOG_FILE")
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.NullHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if log_file else logging.WARNING)


def _command(argv: list[str], name: str) -> list[str] | None:
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(
            f"lastactive {name}: give a command: lastactive {name} -- CMD [ARGS...]",
            file=sys.stderr,
        )
        return None
    return argv


def _hook(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._claude_hook import hook_claude, timeout_from_env

    _quiet_logging()
    try:
        stdin = sys.stdin.buffer.read()
    except (OSError, ValueError):
        stdin = b""
    hook_claude(stdin, _http_url(args.url), timeout_from_env())
    return 0  # never break the agent


def _lease(args: argparse.Namespace) -> int:
    import signal
    import subprocess

    argv = _command(args.argv, "lease")
    from lastactive.conventions import ENV_SESSION_ID

    session_id = args.session_id or os.environ.get(ENV_SESSION_ID)
    if argv is None:
        return 2
    if not session_id:
        print(
            "lastactive lease: no session: pass --session-id or run it inside "
            "`lastactive run` (LASTACTIVE_SESSION_ID)",
            file=sys.stderr,
        )
        return 2
    _quiet_logging()
    from lastactive.instrumentation import Reporter
    from lastactive.instrumentation._signals import wait_child, wakeup_fd

    reporter = Reporter(service_name="lastactive-lease", endpoint=args.endpoint)
    tracker = reporter.session(session_id)
    try:
        with reporter.lease(tracker, args.ttl):
            try:
                child = subprocess.Popen(argv)
            except OSError as exc:
                print(f"lastactive lease: {argv[0]}: {exc.strerror}", file=sys.stderr)
                return 127
            with wakeup_fd() as wake:
                for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                    signal.signal(sig, lambda signum, frame: child.send_signal(signum))
                code = wait_child(child, wake)
    finally:
        reporter.shutdown(1.0)
    return 128 - code if code < 0 else code


def _tmux(args: argparse.Namespace) -> int:
    import subprocess

    from lastactive.instrumentation._tmux import default_command, install, tmux_conf

    url = _http_url(args.url)
    if not args.install:
        print(tmux_conf(default_command(), url))
        return 0
    try:
        install(default_command(), url)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"lastactive tmux: cannot install the hooks: {exc}", file=sys.stderr)
        return 1
    return 0


def _tmux_event(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._claude_hook import timeout_from_env
    from lastactive.instrumentation._tmux import tmux_event

    _quiet_logging()
    try:
        tmux_event(args.event, _http_url(args.url), timeout_from_env())
    except OSError:
        logging.getLogger(__name__).exception("tmux %s not reported", args.event)
    return 0  # never disturb tmux


def _host(args: argparse.Namespace) -> int:
    import signal
    import threading

    _quiet_logging()
    from lastactive.instrumentation import Reporter
    from lastactive.instrumentation._host_watch import watch_host
    from lastactive.instrumentation._signals import main_thread_takes

    stopping = (signal.SIGTERM, signal.SIGINT)
    with main_thread_takes(stopping):  # the SDK's and gRPC's threads are started here
        reporter = Reporter(service_name="lastactive-host", endpoint=args.endpoint)
    stop = threading.Event()
    for sig in stopping:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        watch_host(reporter, args.interval or reporter.export_interval, stop, once=args.once)
        if args.once:
            reporter.flush()  # the one report is the point; a stopped watcher just shuts down
    finally:
        reporter.shutdown(2.0)
    return 0


def _cull(args: argparse.Namespace) -> int:
    import signal
    import threading

    from lastactive.collector._cull import Action, Culler, command_action, http_action

    if not (args.action_command or args.http or args.dry_run):
        print("lastactive cull: give --command, --http or --dry-run", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    action: Action | None = None
    if args.action_command:
        action = command_action(args.action_command)
    elif args.http:
        action = http_action(args.http)
    try:
        culler = Culler(
            _http_url(args.url), action, dry_run=args.dry_run, concurrency=args.concurrency
        )
    except ValueError as exc:
        print(f"lastactive cull: {exc}", file=sys.stderr)
        return 2
    if args.once:
        try:
            culler.once()
        except OSError as exc:
            print(f"lastactive cull: cannot reach the collector: {exc}", file=sys.stderr)
            return 1
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    culler.run(args.interval, stop)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from lastactive.collector._server import serve
    from lastactive.collector.settings import Settings

    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    overrides = {
        field: getattr(args, flag[2:].replace("-", "_"))
        for flag, (field, _, _) in _SERVE_FLAGS.items()
        if getattr(args, flag[2:].replace("-", "_")) is not None
    }
    try:
        settings = Settings(**overrides)
    except ValidationError as exc:
        print(f"lastactive serve: invalid settings:\n{exc}", file=sys.stderr)
        return 2

    def ready(bound: object) -> None:
        print(bound.line(str(settings.db)), flush=True)  # type: ignore[attr-defined]

    from lastactive.collector.policy import PolicyError

    try:
        asyncio.run(serve(settings, ready=ready))
    except PolicyError as exc:
        print(f"lastactive serve: invalid policy: {exc}", file=sys.stderr)
        return 2
    except (OSError, RuntimeError, sqlite3.Error) as exc:  # a port in use, an unusable database
        print(f"lastactive serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._pty_run import run

    argv = _command(args.argv, "run")
    if argv is None:
        return 2
    _quiet_logging()  # export problems must not scribble over the program's terminal

    from lastactive.instrumentation import Reporter

    endpoint = args.endpoint
    return run(
        argv,
        session_id=args.session_id,
        make_reporter=lambda: Reporter(service_name="lastactive-run", endpoint=endpoint),
    )


def _ls(args: argparse.Namespace) -> int:
    from lastactive.collector._ls import fetch_sessions, table
    from lastactive.collector.settings import Settings

    url = args.url
    if not url:
        s = Settings()
        url = f"http://{s.host}:{s.http_port}"
    try:
        sessions = fetch_sessions(url, args.host_id, args.limit)
    except OSError as exc:
        print(f"lastactive ls: cannot reach the collector at {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(sessions, indent=2) if args.json else table(sessions))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lastactive`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    handler = {
        "serve": _serve,
        "run": _run,
        "ls": _ls,
        "hook": _hook,
        "lease": _lease,
        "tmux": _tmux,
        "tmux-event": _tmux_event,
        "host": _host,
        "cull": _cull,
        "proxy": _proxy,
    }[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
