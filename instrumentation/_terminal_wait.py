"""Is a process waiting for its terminal? Read from what Linux exposes under ``/proc``.

A foreground job left open at a prompt of its own (an editor, a pager, a REPL) sleeps in a
``read`` of the terminal, or in ``poll``/``select``/``epoll`` over nothing but the terminal.
A job that works silently uses CPU, or sleeps somewhere else (``sleep``, a socket, a pipe from
a producer). ``/proc/PID/syscall`` gives the system call a sleeping process is blocked in and
its arguments; the file descriptors ``poll`` and ``select`` wait on are read from
``/proc/PID/mem`` (the same ptrace access ``syscall`` needs: our own descendants), an epoll
set's from ``/proc/PID/fdinfo``. Anything that cannot be read counts as not waiting: a job is
only let go when it is known to wait for the terminal.
"""

from __future__ import annotations

import platform
import struct
from pathlib import Path
from typing import Final

__all__ = ["WAITING_FOR_CHILD", "blocked_on", "is_terminal"]

# System call numbers: (read-like, poll-like, select-like, epoll-like, wait-like).
_SYSCALLS: Final = {
    "x86_64": ({0, 17, 19}, {7, 271}, {23, 270}, {232, 281, 441}, {61, 247}),
    "aarch64": ({63, 67, 65}, {73}, {72}, {22, 441}, {260, 95}),
}
_READ, _POLL, _SELECT, _EPOLL, _WAIT = _SYSCALLS.get(platform.machine(), (set(),) * 5)
_POLLIN: Final = 0x001

WAITING_FOR_CHILD: Final = frozenset({-1})
"""What :func:`blocked_on` returns for a process waiting for a child to exit."""


def _epoll_fds(pid: int, epfd: int) -> set[int] | None:
    try:
        with Path(f"/proc/{pid}/fdinfo/{epfd}").open() as f:
            return {int(line.split()[1]) for line in f if line.startswith("tfd:")}
    except (OSError, ValueError, IndexError):
        return None


def _mem(pid: int, address: int, size: int) -> bytes | None:
    try:
        with Path(f"/proc/{pid}/mem").open("rb", buffering=0) as f:
            f.seek(address)
            data = f.read(size)
    except (OSError, ValueError, OverflowError):
        return None
    return data if len(data) == size else None


def blocked_on(pid: int) -> frozenset[int] | None:
    """The file descriptors process ``pid`` is blocked reading (``read``, ``poll``, ``select``
    or ``epoll``), :data:`WAITING_FOR_CHILD`, or ``None`` when it is running, blocked in
    anything else, or cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
        nr = int(fields[0])
        args = [int(a, 16) for a in fields[1:7]]
    except (OSError, ValueError, IndexError):  # "running", no permission, gone
        return None
    if nr in _READ:
        return frozenset({args[0]})
    if nr in _WAIT:
        return WAITING_FOR_CHILD
    if nr in _POLL:
        count = args[1]
        raw = _mem(pid, args[0], 8 * count) if 0 < count <= 1024 else None
        if raw is None:
            return None
        polled = struct.iter_unpack("ihh", raw)
        return frozenset(fd for fd, events, _ in polled if fd >= 0 and events & _POLLIN)
    if nr in _SELECT:
        nfds = args[0]
        if not 0 < nfds <= 1024 or args[1] == 0:
            return None
        raw = _mem(pid, args[1], (nfds + 7) // 8)
        if raw is None:
            return None
        bits = int.from_bytes(raw, "little")
        return frozenset(fd for fd in range(nfds) if bits >> fd & 1)
    if nr in _EPOLL:
        fds = _epoll_fds(pid, args[0])
        return None if fds is None else frozenset(fds)
    return None


def is_terminal(pid: int, fd: int) -> bool:
    """Is ``fd`` of process ``pid`` a terminal (a pseudo-terminal or ``/dev/tty``)?"""
    try:
        target = str(Path(f"/proc/{pid}/fd/{fd}").readlink())
    except OSError:
        return False
    return target.startswith(("/dev/pts/", "/dev/tty"))
