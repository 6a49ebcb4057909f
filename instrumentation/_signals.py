"""Signal handlers that run promptly in a process with helper threads.

The kernel hands a process-directed signal to any thread that does not block it; the OTel SDK
and gRPC start several. CPython's C-level handler then only marks the signal pending, and the
Python handler runs when the *main* thread next executes bytecode: a main thread blocked in
``poll`` or ``waitpid`` would not notice (a wrapper told to stop would keep waiting, and its
program would never hear of it). :func:`wakeup_fd` gives a descriptor that becomes readable
whichever thread took the signal (``signal.set_wakeup_fd``), so the main loop polls it too;
:func:`main_thread_takes` keeps the signals away from helper threads altogether, for a main
thread that waits on a ``threading.Event`` (whose wait a signal handler does interrupt).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Iterable, Iterator


@contextlib.contextmanager
def wakeup_fd() -> Iterator[int]:
    """Yield the read end of a pipe written to whenever a signal with a Python handler arrives.

    Poll it with the descriptors the main loop waits on and call :func:`drain` when it is
    readable; the handlers themselves run in the main thread as soon as it leaves ``poll``.
    Main thread only (``signal.set_wakeup_fd`` raises ``ValueError`` elsewhere). The previous
    wakeup descriptor is restored on exit.
    """
    read_end, write_end = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    try:
        yield read_end
    finally:
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)


@contextlib.contextmanager
def main_thread_takes(signals: Iterable[signal.Signals]) -> Iterator[None]:
    """Threads started inside the block (and the threads they start) block ``signals``, so
    the kernel hands those to the main thread. Main thread only; its mask is restored on exit.
    """
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def drain(fd: int) -> None:
    """Empty the wakeup pipe ``fd`` (non-blocking) so the next signal makes it readable again."""
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 512):
            pass


def wait_child(child: subprocess.Popen[bytes], wake: int) -> int:
    """Wait for ``child`` to exit while signal handlers keep running; its ``returncode``.

    ``wake`` is a :func:`wakeup_fd`. The child's exit is watched through a pidfd (Linux 5.3+),
    so the main thread never blocks in ``waitpid`` where a signal would go unhandled.
    """
    pidfd = os.pidfd_open(child.pid)
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while child.poll() is None:
            poller.poll()
            drain(wake)
    finally:
        os.close(pidfd)
    return child.returncode
