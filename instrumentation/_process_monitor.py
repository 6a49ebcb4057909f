"""While ``lastactive run``'s program lives: liveness, and foreground work (seed 000 PROCESS).

Every export interval it records ``process`` (liveness) and looks at the terminal's foreground
process group (``tcgetpgrp`` on the pseudo-terminal):

* when it is not the program's own group (a shell runs a command), a ``foreground`` hold says a
  command is running, renewed every interval and released back at the prompt;
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

    def _hold(self, until: float) -> None:
        self._reporter.hold(
            self._tracker, HoldKind.FOREGROUND, str(self._tracker.session_id), until
        )

    def _foreground(self) -> None:
        try:
            group = os.tcgetpgrp(self._master)
        except OSError:
            return
        now = self._reporter.clock()
        if group != self._pid:
            self._hold(now + hold_ttl(self._interval))
            self._holding = True
        elif self._holding:
            self._hold(now)
            self._holding = False
        cpu = self._group_cpu(group)
        if group == self._last_group and cpu - self._last_cpu >= BUSY_CPU_FRACTION * (
            now - self._last_check
        ):
            self._tracker.record(Source.FOREGROUND)
        self._last_group, self._last_cpu, self._last_check = group, cpu, now

    def _group_cpu(self, group: int) -> float:
        """CPU seconds (user + system) used so far by the processes of ``group``."""
        assert self._process is not None
        total = 0.0
        try:
            procs = [self._process, *self._process.children(recursive=True)]
        except psutil.Error:
            return 0.0
        for proc in procs:
            try:
                if os.getpgid(proc.pid) == group:
                    times = proc.cpu_times()
                    total += times.user + times.system
            except (psutil.Error, OSError):
                continue
        return total
