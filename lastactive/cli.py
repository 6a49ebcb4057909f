"""The ``lastactive`` command. It only parses arguments and delegates:

========================  =================================================================
``serve``                 the collector (:func:`lastactive.collector._server.serve_command`)
``run``                   a program in a PTY, reported (``instrumentation._commands``)
``lease``                 a busy lease while a command runs (``instrumentation._lease``)
``proxy``                 a TCP/RFB/WebSocket relay that reports who uses it
``host``                  this host's boot, logins and user input
``hook``                  an agent's hook events (Claude Code) from stdin
``tmux``, ``tmux-event``  tmux hooks reporting attached clients
``ls``                    the sessions table (:mod:`lastactive._ls`)
``cull``                  the reference idle-policy client (:mod:`lastactive._cull`)
``token``                 the collector's credentials (:mod:`lastactive._token`)
``examples``              the deployment files the package carries (:mod:`lastactive._examples`)
========================  =================================================================

Where each command finds the collector is :mod:`lastactive.client`'s one rule. Only ``argparse``
is imported up front, so a hook starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import lastactive

_SERVE_FLAGS = {
    # flag: (Settings field, type, help)
    "--host": ("host", str, "bind address (LASTACTIVE_HOST, default 127.0.0.1)"),
    "--grpc-port": ("grpc_port", int, "OTLP/gRPC + query gRPC port (LASTACTIVE_GRPC_PORT, 4317)"),
    "--http-port": ("http_port", int, "OTLP/HTTP + query HTTP port (LASTACTIVE_HTTP_PORT, 4318)"),
    "--db": ("db", str, "SQLite file (LASTACTIVE_DB, default in the user's state directory)"),
    "--store": (
        "store",
        str,
        "postgresql://USER@HOST:PORT/DB: state in PostgreSQL instead (LASTACTIVE_STORE)",
    ),
    "--replica": ("replica", str, "this replica's name on a shared store (LASTACTIVE_REPLICA)"),
    "--lease": ("lease", float, "seconds shard leases last on a shared store (default 5)"),
    "--flush-interval": ("flush_interval", float, "seconds between background commits (1)"),
    "--max-request-bytes": ("max_request_bytes", int, "request size limit (default 64 MiB)"),
    "--max-clock-skew": ("max_clock_skew", float, "seconds of future skew allowed (default 10)"),
    "--retention": ("retention", float, "seconds ended sessions are kept (default 86400)"),
    "--policy": ("policy", str, "idle policy file, TOML (LASTACTIVE_POLICY)"),
    "--synchronous-commit": (
        "synchronous_commit",
        str,
        "true: answer exports once committed (default); false: faster, a crash loses some",
    ),
    "--max-inflight-requests": ("max_inflight_requests", int, "exports in flight (64)"),
    "--max-inflight-bytes": ("max_inflight_bytes", int, "export bytes in flight (32 MiB)"),
    "--max-entities": ("max_entities", int, "sessions, agents, hosts tracked (1000000)"),
    "--max-watchers": ("max_watchers", int, "open Watch/SSE streams (256)"),
    "--metrics-top-sessions": (
        "metrics_top_sessions",
        int,
        "per-session series on /metrics beyond runaway/stuck (20)",
    ),
    "--auth-file": (
        "auth_file",
        str,
        "credentials file (`lastactive token create`; LASTACTIVE_AUTH_FILE); reread on SIGHUP",
    ),
    "--tls-cert": ("tls_cert", str, "PEM certificate chain: TLS on both ports (SIGHUP reloads)"),
    "--tls-key": ("tls_key", str, "PEM private key of --tls-cert"),
    "--tls-client-ca": ("tls_client_ca", str, "PEM CA client certificates must chain to (mTLS)"),
    "--log-level": ("log_level", str, "debug, info, warning (default) or error"),
    "--log-format": ("log_format", str, "text (default) or json: one object per line"),
}

_URL_HELP = "collector HTTP URL (default LASTACTIVE_URL, else LASTACTIVE_HOST/HTTP_PORT)"
_ENDPOINT_HELP = (
    "collector OTLP endpoint (default OTEL_EXPORTER_OTLP_ENDPOINT, else LASTACTIVE_HOST/ports)"
)


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


def _url(args: argparse.Namespace) -> str:
    from lastactive.client import http_url

    return http_url(args.url)


def _serve(args: argparse.Namespace) -> int:
    from lastactive.collector._server import serve_command

    overrides = {
        field: getattr(args, field)
        for field, _, _ in _SERVE_FLAGS.values()
        if getattr(args, field) is not None
    }
    if args.insecure:
        overrides["insecure"] = True
    if args.access_log:
        overrides["access_log"] = True
    if args.verbose and "log_level" not in overrides:
        overrides["log_level"] = "info"
    return serve_command(overrides, args.config, print_config=args.print_config)


def _examples(args: argparse.Namespace) -> int:
    from lastactive._examples import examples_command

    return examples_command(args.dir, args.runbook_base, args.force)


def _token(args: argparse.Namespace) -> int:
    from lastactive._token import token_command

    return token_command(args)


def _run(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import run_command

    return run_command(args.argv, args.session_id, args.endpoint, args.command_args)


def _lease(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import lease_command

    return lease_command(args.argv, args.ttl, args.session_id, args.endpoint)


def _proxy(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import proxy_command

    return proxy_command(args.listen, args.target, args.protocol, args.session_id, args.endpoint)


def _host(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import host_command

    return host_command(args.interval, args.once, args.endpoint)


def _hook(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import hook_command

    return hook_command(args.agent, _url(args))


def _tmux(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import tmux_command

    return tmux_command(_url(args), args.install)


def _tmux_event(args: argparse.Namespace) -> int:
    from lastactive.instrumentation._commands import tmux_event_command

    return tmux_event_command(args.event, _url(args))


def _ls(args: argparse.Namespace) -> int:
    from lastactive._ls import ls_command

    return ls_command(_url(args), args.host_id, args.limit, args.json, args.state)


def _cull(args: argparse.Namespace) -> int:
    from lastactive._cull import cull_command

    return cull_command(
        _url(args),
        command=args.action_command,
        http=args.http,
        dry_run=args.dry_run,
        concurrency=args.concurrency,
        interval=args.interval,
        once=args.once,
    )


Handler = Callable[[argparse.Namespace], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lastactive",
        description="OpenTelemetry-based activity tracking: who uses a session, and how long "
        "has it been idle.",
    )
    parser.add_argument(
        "--version", action="version", version=f"lastactive {lastactive.__version__}"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        p.set_defaults(handler=handler)
        return p

    serve = command("serve", _serve, "run the collector (OTLP in, activity state out)")
    for flag, (field, typ, text) in _SERVE_FLAGS.items():
        serve.add_argument(flag, dest=field, type=typ, help=text)
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="serve beyond loopback without credentials or TLS (refused otherwise)",
    )
    serve.add_argument("--access-log", action="store_true", help="log every HTTP request")
    serve.add_argument("-v", "--verbose", action="store_true", help="log at INFO")
    serve.add_argument(
        "--config", metavar="FILE", help="settings file, TOML, same names (LASTACTIVE_CONFIG)"
    )
    serve.add_argument(
        "--print-config",
        action="store_true",
        help="print the settings in force as a TOML file, then exit",
    )

    ex = command(
        "examples",
        _examples,
        "write the dashboards, alert rules, Collector config, systemd units, image and compose",
    )
    ex.add_argument("dir", help="where to write them")
    ex.add_argument(
        "--runbook-base",
        metavar="URL",
        help="where docs/ is published: the alerts' runbook_url become URL/runbook.md#...",
    )
    ex.add_argument("--force", action="store_true", help="overwrite existing files")

    token = command("token", _token, "create, list and revoke the collector's credentials")
    token.add_argument(
        "--auth-file", help="the collector's credentials file (default LASTACTIVE_AUTH_FILE)"
    )
    token_sub = token.add_subparsers(dest="action", required=True)
    create = token_sub.add_parser("create", help="add a credential; prints a new token once")
    create.add_argument(
        "--scope",
        action="append",
        required=True,
        choices=["report", "read", "act"],
        help="what it may do (repeat for several)",
    )
    create.add_argument("--name", help="a name to list and revoke it by (default: its id)")
    create.add_argument("--host", help="report about this host.id only")
    create.add_argument(
        "--session-prefix",
        action="append",
        default=[],
        dest="session_prefixes",
        help="report about session ids with this prefix only (repeatable)",
    )
    create.add_argument(
        "--agent",
        action="append",
        default=[],
        dest="agents",
        help="report about this agent only (repeatable)",
    )
    create.add_argument(
        "--certificate",
        metavar="IDENTITY",
        help="grant to the client certificate with this DNS name (or CN) instead of a token",
    )
    token_sub.add_parser("list", help="the credentials (never the tokens)")
    revoke = token_sub.add_parser("revoke", help="remove a credential (serve: on SIGHUP)")
    revoke.add_argument("name", help="its name or id")

    run = command("run", _run, "run a command in a pseudo-terminal and report activity")
    run.add_argument("--session-id", help="session.id (default LASTACTIVE_SESSION_ID or random)")
    run.add_argument("--endpoint", help=_ENDPOINT_HELP)
    run.add_argument(
        "--command-args",
        action="store_true",
        help="also report the arguments (process.command_args); they may hold secrets",
    )
    run.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    hook = command("hook", _hook, "report an agent's hook events (reads stdin)")
    hook.add_argument("agent", choices=["claude"], help="whose hook payloads: Claude Code")
    hook.add_argument("--url", help=_URL_HELP)

    lease = command("lease", _lease, "hold a busy lease on a session while CMD runs")
    lease.add_argument(
        "--ttl",
        required=True,
        type=_duration,
        help="lease lifetime from each renewal: 90s, 30m, 2h or seconds",
    )
    lease.add_argument("--session-id", help="session.id (default LASTACTIVE_SESSION_ID)")
    lease.add_argument("--endpoint", help=_ENDPOINT_HELP)
    lease.add_argument("argv", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]")

    tmux = command("tmux", _tmux, "print (or --install) tmux hooks reporting clients")
    tmux.add_argument("--install", action="store_true", help="set them on the running server")
    tmux.add_argument("--url", help=_URL_HELP)

    tmux_event = command("tmux-event", _tmux_event, "what the tmux hooks run (internal)")
    tmux_event.add_argument("--url", help=_URL_HELP)
    tmux_event.add_argument("event", choices=["attached", "detached", "session-changed"])

    host = command("host", _host, "report this host's boot, logins and user input")
    host.add_argument("--interval", type=float, default=None, help="seconds between checks")
    host.add_argument("--once", action="store_true", help="check once, report, exit")
    host.add_argument("--endpoint", help=_ENDPOINT_HELP)

    cull = command("cull", _cull, "hibernate what the idle policy says (reference client)")
    cull.add_argument("--url", help=_URL_HELP)
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

    proxy = command("proxy", _proxy, "relay TCP (raw or VNC/RFB) and report who uses it")
    proxy.add_argument("--listen", required=True, type=_address, help="HOST:PORT to accept on")
    proxy.add_argument("--target", required=True, type=_address, help="HOST:PORT to relay to")
    proxy.add_argument(
        "--protocol",
        choices=["raw", "rfb", "websocket"],
        default="raw",
        help="rfb: only VNC key, pointer and clipboard input is engagement",
    )
    proxy.add_argument("--session-id", help="session.id (default proxy:<target>)")
    proxy.add_argument("--endpoint", help=_ENDPOINT_HELP)

    ls = command("ls", _ls, "list sessions, most recently active first")
    ls.add_argument("--url", help=_URL_HELP)
    ls.add_argument("--host", dest="host_id", help="only sessions on this host.id")
    ls.add_argument("--limit", type=int, default=0, help="at most this many")
    ls.add_argument("--json", action="store_true", help="print the API's JSON")
    ls.add_argument(
        "--state",
        choices=["active", "idle", "hibernated", "ended", "runaway", "stuck"],
        help="only sessions in this state (or flagged runaway or stuck)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``lastactive`` console script; returns the exit status."""
    args = _parser().parse_args(argv)
    handler: Handler = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
