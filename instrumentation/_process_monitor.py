"""While ``lastactive run``'s program lives: liveness, and foreground work (seed 000 PROCESS).

Every export interval it records ``process`` (liveness) and looks at the terminal's foreground
process group (``tcgetpgrp`` on the pseudo-terminal):

* when it is not the program's own group (a shell runs a command), a ``foreground`` hold says a
  command is running, renewed every interval, released back at the prompt, and released too
  while the command only **waits for the terminal** (an editor, a pager or a REPL left open:
  every process of the group blocked reading the terminal, no CPU; see
  :mod:`._terminal_wait`). A command that works silently (CPU, or asleep anywhere but a
  terminal read: ``sleep 600``, a socket) keeps it. The hold's reason says which:
  ``make (CPU 94 %)``, ``sleep (not reading the terminal)``, ``vim waiting for the terminal``;
* when the foreground group used at least :data:`BUSY_CPU_FRACTION` of a core since the last
  check (psutil), ``foreground`` work is recorded: a silent compile is not idle, a shell
  sitting at its prompt (or an editor waiting for keys) is.
"""

from __future__ import annotations

import os
import threading
from typing import Final

import psutil

from lastactive.conventions import HoldKind, Source
from lastactive.instrumentation._reporter import Reporter, hold_ttl
from lastactive.instrumentation._terminal_wait import WAITING_FOR_CHILD, blocked_on, is_terminal
from lastactive.instrumentation._tracker import SessionTracker

BUSY_CPU_FRACTION: Final = 0.1
"""CPU seconds per second of the foreground group that count as work (10 % of one core)."""


class ProcessMonitor:
    """A thread that watches process ``pid`` on pseudo-terminal ``master`` for ``tracker``."""

    def __init__(self, pid: int, master: int, tracker: SessionTracker, reporter: Reporter) -> None:
        self._pid = pid
        self._master = master
        self._tracker = tracker
        self._reporter = reporter
        self._interval = reporter.export_interval
        self._stop = threading.Event()
        self._holding = False
        self._last_group = -1
        self._last_cpu = 0.0
        self._last_check = 0.0
        try:
            self._process: psutil.Process | None = psutil.Process(pid)
        except psutil.Error:
            self._process = None
        self._thread = threading.Thread(target=self._loop, name="lastactive-process", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (idempotent); releases a foreground hold still standing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        try:
            while self._process is not None and self._alive():
                self._tracker.alive(Source.PROCESS)
                self._foreground()
                if self._stop.wait(self._interval):
                    break
        finally:
            if self._holding:
                self._hold(self._reporter.clock())

    def _alive(self) -> bool:
        try:
            return self._process is not None and self._process.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def _hold(self, until: float, reason: str | None = None) -> None:
        self._reporter.hold(
            self._tracker, HoldKind.FOREGROUND, str(self._tracker.session_id), until, reason
        )

    def _foreground(self) -> None:
        try:
            group = os.tcgetpgrp(self._master)
        except OSError:
            return
        now = self._reporter.clock()
        members = self._group(group)
        cpu = _cpu(members)
        elapsed = now - self._last_check
        busy = group == self._last_group and cpu - self._last_cpu >= BUSY_CPU_FRACTION * elapsed
        if group != self._pid:
            share = (cpu - self._last_cpu) / elapsed if group == self._last_group else 0.0
            waiting, reason = _describe(members, group, busy, share)
            if not waiting:
                self._hold(now + hold_ttl(self._interval), reason)
                self._holding = True
            elif self._holding:  # left open at its own prompt: does not hold the session up
                self._hold(now, reason)
                self._holding = False
        elif self._holding:
            self._hold(now)
            self._holding = False
        if busy:
            self._tracker.record(Source.FOREGROUND)
        self._last_group, self._last_cpu, self._last_check = group, cpu, now

    def _group(self, group: int) -> list[psutil.Process]:
        """The program's processes in process group ``group``."""
        assert self._process is not None
        try:
            procs = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return []
        out = []
        for proc in procs:
            try:
                if os.getpgid(proc.pid) == group:
                    out.append(proc)
            except OSError:
                continue
        return out


def _cpu(procs: list[psutil.Process]) -> float:
    """CPU seconds (user + system) used so far by ``procs``."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def _describe(
    procs: list[psutil.Process], group: int, busy: bool, share: float
) -> tuple[bool, str]:
    """Whether the foreground group only waits for the terminal, and the hold's reason."""
    name = next((_name(p) for p in procs if p.pid == group), None) or (
        _name(procs[0]) if procs else "a command"
    )
    if busy:
        return False, f"{name} (CPU {100 * share:.0f} %)"
    reading = False
    for proc in procs:
        fds = blocked_on(proc.pid)
        if fds == WAITING_FOR_CHILD:
            continue
        if not fds or not all(is_terminal(proc.pid, fd) for fd in fds):
            return False, f"{name} (not reading the terminal)"
        reading = True
    if not reading:
        return False, f"{name} (not reading the terminal)"
    return True, f"{name} waiting for the terminal"


def _name(proc: psutil.Process) -> str:
    try:
        return str(proc.name())
    except psutil.Error:
        return "a command"
