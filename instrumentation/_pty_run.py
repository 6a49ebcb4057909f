"""``lastactive run``: run a command in a pseudo-terminal and report its session's activity."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import pty
import select
import signal
import termios
import tty
import uuid
from collections.abc import Callable, Sequence
from types import FrameType

from lastactive.conventions import (
    ATTR_PROCESS_COMMAND,
    ATTR_PROCESS_COMMAND_ARGS,
    ATTR_PROCESS_EXIT_CODE,
    ATTR_PROCESS_PID,
    ENV_SESSION_ID,
    EVENT_ACTIVITY,
    EVENT_PROCESS_EXIT,
    Source,
)
from lastactive.instrumentation._process_monitor import ProcessMonitor
from lastactive.instrumentation._reporter import Reporter
from lastactive.instrumentation._signals import drain, wakeup_fd
from lastactive.instrumentation._tracker import SessionTracker

EXIT_EXPORT_TIMEOUT_S = 1.0
"""Seconds the wrapper waits for its last export after the program exits (the collector on
loopback answers in milliseconds; when it is down, the program's exit must not wait longer)."""

_FORWARDED = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT)
"""Signals sent to the wrapper go on to the program, which decides; the wrapper exits with it
and restores the terminal."""
_PYTHON_IGNORES = (signal.SIGPIPE, signal.SIGXFSZ)

_CHUNK = 65536
_STDIN, _STDOUT = 0, 1


def run(
    argv: Sequence[str],
    *,
    session_id: str | None = None,
    make_reporter: Callable[[], Reporter] = Reporter,
    command_args: bool = False,
) -> int:
    """Run ``argv`` in a new pseudo-terminal, relay it, and report its activity.

    The start event names the program (``process.command``: ``argv[0]``); its arguments
    (``process.command_args``) only with ``command_args``, since they may hold secrets (semconv
    makes them opt-in).

    Input bytes (stdin to the program: a user's keystrokes) count as ``input`` (engagement),
    output bytes as ``output`` (work); the process is checked with psutil every export interval
    while it lives (``process``, liveness); start and exit (with its code) are events. Raw mode
    and window size (with SIGWINCH) are passed through when stdin is a terminal; when it is not,
    echo is turned off and end of input is passed on as the terminal's EOF character.

    Returns:
        The program's exit status; 128 + N if a signal N killed it; 127 if it could not start.
    Raises:
        ValueError: ``argv`` is empty.
    """
    if not argv:
        raise ValueError("no command given to run")
    session_id = session_id or os.environ.get(ENV_SESSION_ID) or uuid.uuid4().hex
    env = {**os.environ, ENV_SESSION_ID: session_id}
    stdin_tty = os.isatty(_STDIN)
    winsize = _get_winsize(_STDIN) if stdin_tty else None

    # Fork before any thread exists (the reporter starts the SDK's export threads).
    pid, master = pty.fork()
    if pid == 0:  # child: the slave end is its controlling terminal and stdio
        try:
            # What CPython ignores at start-up, as subprocess's restore_signals puts back:
            # with SIGPIPE ignored, ``yes | head -1`` would end in "Broken pipe" errors.
            for sig in _PYTHON_IGNORES:
                signal.signal(sig, signal.SIG_DFL)
            if winsize is not None:
                fcntl.ioctl(_STDIN, termios.TIOCSWINSZ, winsize)
            os.execvpe(argv[0], list(argv), env)
        except OSError as exc:
            os.write(2, f"lastactive run: {argv[0]}: {exc.strerror}\r\n".encode())
        os._exit(127)

    if not stdin_tty:
        _disable_echo(master)
    reporter = make_reporter()
    tracker = reporter.session(session_id)
    started: dict[str, str | int | float | Sequence[str]] = {
        ATTR_PROCESS_PID: pid,
        ATTR_PROCESS_COMMAND: argv[0],
    }
    if command_args:
        started[ATTR_PROCESS_COMMAND_ARGS] = list(argv)
    reporter.event(tracker, EVENT_ACTIVITY, started, source=Source.START)
    monitor = ProcessMonitor(pid, master, tracker, reporter)
    monitor.start()

    saved = termios.tcgetattr(_STDIN) if stdin_tty else None

    def on_winch(signum: int, frame: FrameType | None) -> None:
        ws = _get_winsize(_STDIN)
        if ws is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(master, termios.TIOCSWINSZ, ws)

    def forward(signum: int, frame: FrameType | None) -> None:
        # The program leads its own session (pty.fork), so its group id is its pid.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signum)

    handlers = {sig: forward for sig in _FORWARDED}
    if stdin_tty:
        handlers[signal.SIGWINCH] = on_winch
    previous = {sig: signal.signal(sig, h) for sig, h in handlers.items()}
    status: int | None = None
    try:
        if saved is not None:
            tty.setraw(_STDIN)
        with wakeup_fd() as wake:
            _relay(master, wake, tracker, stdin_tty)
        # The program closed its terminal (``cat`` closes its stdio before it exits). Closing
        # the master now would hang the terminal up, and the kernel's SIGHUP would kill a
        # program still between its last close and its exit: wait for it first (signals sent
        # meanwhile are still forwarded).
        _, status = os.waitpid(pid, 0)
    finally:
        if saved is not None:
            termios.tcsetattr(_STDIN, termios.TCSAFLUSH, saved)
        for sig, old in previous.items():
            signal.signal(sig, old)
        monitor.stop()  # before the terminal it watches is closed
        os.close(master)
    if status is None:  # the relay failed: the hangup ends the program
        _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    reporter.event(
        tracker,
        EVENT_PROCESS_EXIT,
        {ATTR_PROCESS_PID: pid, ATTR_PROCESS_EXIT_CODE: code},
        source=Source.EXIT,
    )
    reporter.shutdown(EXIT_EXPORT_TIMEOUT_S)
    return code


def _relay(master: int, wake: int, tracker: SessionTracker, stdin_tty: bool) -> None:
    """Copy stdin -> master and master -> stdout until the program closes its terminal.

    ``wake`` is a :func:`~._signals.wakeup_fd`: a signal taken by any thread
    ends the ``poll`` so its handler runs now.
    """
    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(wake, select.POLLIN)
    stdin_open = True
    try:
        poller.register(_STDIN, select.POLLIN)
    except (OSError, ValueError):  # no stdin at all
        stdin_open = False
    add_output, add_input = tracker.add_output, tracker.add_input
    read, write = os.read, _write_all
    stdout_ok = True
    line_open = False
    while True:
        for fd, _ in poller.poll():  # PEP 475: retried after a signal handler runs
            if fd == master:
                try:
                    data = read(master, _CHUNK)
                except OSError as exc:  # EIO: the program closed the terminal
                    if exc.errno != errno.EIO:
                        raise
                    return
                if not data:
                    return
                add_output(len(data))
                if stdout_ok:
                    try:
                        write(_STDOUT, data)
                    except OSError:  # stdout gone: keep draining so the program can finish
                        stdout_ok = False
            elif fd == wake:
                drain(wake)
            elif stdin_open:
                data = read(_STDIN, _CHUNK)
                if data:
                    add_input(len(data))
                    write(master, data)
                    line_open = not data.endswith(b"\n")
                else:  # end of input: unregister, and pass EOF on when not a terminal
                    stdin_open = False
                    poller.unregister(_STDIN)
                    if not stdin_tty:
                        # In canonical mode the first EOF only ends a partial line.
                        write(master, _eof_char(master) * (2 if line_open else 1))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _get_winsize(fd: int) -> bytes | None:
    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
    except OSError:
        return None


def _disable_echo(master: int) -> None:
    """Input that is not typed on a terminal should not come back as output."""
    attrs = termios.tcgetattr(master)
    attrs[3] &= ~termios.ECHO
    termios.tcsetattr(master, termios.TCSANOW, attrs)


def _eof_char(master: int) -> bytes:
    cc = termios.tcgetattr(master)[6][termios.VEOF]
    return cc if isinstance(cc, bytes) else bytes([cc])
