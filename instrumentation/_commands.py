"""The instrumentation's commands: ``run``, ``lease``, ``proxy``, ``host``, ``hook``, ``tmux``
and ``tmux-event``, called by :mod:`lastactive.cli` once it has parsed the arguments.

Each returns the command's exit status. Reporters must not scribble on the terminal of the
program they watch, so export problems go to ``LASTACTIVE_LOG_FILE`` or nowhere. Heavy imports
(the OpenTelemetry SDK) happen inside the commands that need them: ``hook`` and ``tmux-event``
run once per event and use only the standard library (:mod:`lastactive.client`).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence

from lastactive.conventions import ENV_SESSION_ID

_log = logging.getLogger(__name__)


def quiet_logging() -> None:
    """Log to ``LASTACTIVE_LOG_FILE`` (at INFO) or nowhere: never to the watched terminal."""
    log_file = os.environ.get("LASTACTIVE_LOG_FILE")
    handler: logging.Handler = logging.FileHandler(log_file) if log_file else logging.NullHandler()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO if log_file else logging.WARNING)


def _command(argv: Sequence[str], name: str) -> list[str] | None:
    argv = list(argv)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        print(
            f"lastactive {name}: give a command: lastactive {name} -- CMD [ARGS...]",
            file=sys.stderr,
        )
        return None
    return argv


def run_command(
    argv: Sequence[str], session_id: str | None, endpoint: str | None, command_args: bool = False
) -> int:
    """``lastactive run -- CMD``: the program's exit status, 2 without a command."""
    from lastactive.instrumentation._pty_run import run

    command = _command(argv, "run")
    if command is None:
        return 2
    quiet_logging()
    from lastactive.instrumentation._reporter import Reporter

    return run(
        command,
        session_id=session_id,
        make_reporter=lambda: Reporter(service_name="lastactive-run", endpoint=endpoint),
        command_args=command_args,
    )


def lease_command(
    argv: Sequence[str], ttl: float, session_id: str | None, endpoint: str | None
) -> int:
    """``lastactive lease --ttl T -- CMD``: CMD's exit status; 2 without a command or a
    session (``--session-id`` or ``LASTACTIVE_SESSION_ID``)."""
    command = _command(argv, "lease")
    session_id = session_id or os.environ.get(ENV_SESSION_ID)
    if command is None:
        return 2
    if not session_id:
        print(
            "lastactive lease: no session: pass --session-id or run it inside "
            f"`lastactive run` ({ENV_SESSION_ID})",
            file=sys.stderr,
        )
        return 2
    quiet_logging()
    from lastactive.instrumentation._lease import lease
    from lastactive.instrumentation._reporter import Reporter

    reporter = Reporter(service_name="lastactive-lease", endpoint=endpoint)
    try:
        return lease(command, reporter, session_id, ttl)
    finally:
        reporter.shutdown(1.0)


def proxy_command(
    listen: tuple[str, int],
    target: tuple[str, int],
    protocol: str,
    session_id: str | None,
    endpoint: str | None,
) -> int:
    """``lastactive proxy``: relay until SIGTERM/SIGINT; 1 when it cannot listen."""
    import asyncio
    import signal

    quiet_logging()
    from lastactive.instrumentation._proxy import ProxyInstrument
    from lastactive.instrumentation._proxy_relay import serve_proxy, serve_websocket
    from lastactive.instrumentation._reporter import Reporter

    reporter = Reporter(service_name="lastactive-proxy", endpoint=endpoint)
    where = f"{target[0]}:{target[1]}"
    # A WebSocket front classifies RFB inside when the target greets with it (noVNC).
    inner = "auto" if protocol == "websocket" else protocol
    instrument = ProxyInstrument(reporter, session_id or f"proxy:{where}", inner)
    serve = serve_websocket if protocol == "websocket" else serve_proxy

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)

        def ready(port: int) -> None:
            print(f"lastactive proxy on {listen[0]}:{port} -> {where} ({protocol})", flush=True)

        await serve(listen, target, instrument, ready=ready, stop=stop)

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"lastactive proxy: {exc}", file=sys.stderr)
        return 1
    finally:
        reporter.shutdown(2.0)
    return 0


def host_command(interval: float | None, once: bool, endpoint: str | None) -> int:
    """``lastactive host``: watch boot, logins and tty input until SIGTERM/SIGINT (or once)."""
    import signal
    import threading

    quiet_logging()
    from lastactive.instrumentation._host_watch import watch_host
    from lastactive.instrumentation._reporter import Reporter
    from lastactive.instrumentation._signals import main_thread_takes

    stopping = (signal.SIGTERM, signal.SIGINT)
    with main_thread_takes(stopping):  # the SDK's and gRPC's threads are started here
        reporter = Reporter(service_name="lastactive-host", endpoint=endpoint)
    stop = threading.Event()
    for sig in stopping:
        signal.signal(sig, lambda signum, frame: stop.set())
    try:
        watch_host(reporter, interval or reporter.export_interval, stop, once=once)
        if once:
            reporter.flush()  # the one report is the point; a stopped watcher just shuts down
    finally:
        reporter.shutdown(2.0)
    return 0


def hook_command(agent: str, url: str) -> int:
    """``lastactive hook claude``: report the hook payload on stdin; always 0 (never break the
    agent)."""
    from lastactive.client import hook_timeout
    from lastactive.instrumentation._claude_hook import hook_claude

    quiet_logging()
    try:
        stdin = sys.stdin.buffer.read()
    except (OSError, ValueError):
        stdin = b""
    if agent == "claude":
        hook_claude(stdin, url, hook_timeout())
    return 0


def tmux_command(url: str, install: bool) -> int:
    """``lastactive tmux``: print the hooks, or set them on the running server (1 on failure)."""
    import subprocess

    from lastactive.instrumentation._tmux import default_command, install_hooks, tmux_conf

    if not install:
        print(tmux_conf(default_command(), url))
        return 0
    try:
        install_hooks(default_command(), url)
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"lastactive tmux: cannot install the hooks: {exc}", file=sys.stderr)
        return 1
    return 0


def tmux_event_command(event: str, url: str) -> int:
    """``lastactive tmux-event EVENT`` (what the hooks run): always 0 (never disturb tmux)."""
    from lastactive.client import hook_timeout
    from lastactive.instrumentation._tmux import tmux_event

    quiet_logging()
    try:
        tmux_event(event, url, hook_timeout())
    except OSError:
        _log.exception("tmux %s not reported", event)
    return 0
