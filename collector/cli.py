"""The ``lastactive`` command: ``serve``, ``run``, ``ls``.

The CLI only parses arguments and delegates: ``serve`` to :func:`collector._server.serve`,
``run`` to :func:`instrumentation.run`, ``ls`` to :mod:`collector._ls`.
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


def _serve(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from collector._server import serve
    from collector.settings import Settings

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

    try:
        asyncio.run(serve(settings, ready=ready))
    except (OSError, RuntimeError, sqlite3.Error) as exc:  # a port in use, an unusable database
        print(f"lastactive serve: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from instrumentation._pty_run import run

    argv = list(args.argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print("lastactive run: give a command: lastactive run -- CMD [ARGS...]", file=sys.stderr)
        return 2
    # Export problems must not scribble over the wrapped program's terminal.
    log_file = os.environ.get("LASTACTIVE_LOG_FILE")
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.NullHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if log_file else logging.WARNING)

    from instrumentation import Reporter

    endpoint = args.endpoint
    return run(
        argv,
        session_id=args.session_id,
        make_reporter=lambda: Reporter(service_name="lastactive-run", endpoint=endpoint),
    )


def _ls(args: argparse.Namespace) -> int:
    from collector._ls import fetch_sessions, table
    from collector.settings import Settings

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
    handler = {"serve": _serve, "run": _run, "ls": _ls}[args.command]
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
