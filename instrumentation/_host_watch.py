"""``lastactive host``: host-level sources (seed 000): boot, SSH logins, and user input.

* ``boot`` is the kernel's boot time (psutil), exported as an absolute time: the same value at
  every export, so the collector records one boot per boot and a collector restart is no boot.
* Each logged-in terminal (utmp, through psutil) is a ``client`` hold on the host, renewed every
  interval and released at logout, plus ``ssh`` presence.
* ``user`` (engagement) is the latest input on those terminals: the tty's access time, the way
  ``w`` computes IDLE (input updates it, output does not; Linux updates it coarsely, about
  every 8 s, so keystroke timing does not leak).
"""

from __future__ import annotations

import threading
from pathlib import Path

import psutil

from lastactive.conventions import HoldKind, Source
from lastactive.instrumentation._reporter import Reporter, hold_ttl


def tty_input_time(terminal: str) -> float | None:
    """Seconds since the epoch of the last input on ``/dev/<terminal>`` (its atime), or None."""
    try:
        return (Path("/dev") / terminal).stat().st_atime
    except OSError:
        return None


def watch_host(
    reporter: Reporter, interval: float, stop: threading.Event, once: bool = False
) -> None:
    """Report the host's boot, logins and user input every ``interval`` seconds until ``stop``
    is set (or once). Uses the reporter's host-level tracker."""
    host = reporter.session(None)
    host.times[Source.BOOT] = psutil.boot_time()
    held: set[str] = set()
    clock = reporter.clock
    while True:
        now = clock()
        logged_in: dict[str, float | None] = {
            u.terminal: tty_input_time(u.terminal) for u in psutil.users() if u.terminal
        }
        for terminal, typed in logged_in.items():
            reporter.hold(host, HoldKind.CLIENT, f"login:{terminal}", now + hold_ttl(interval))
            if typed is not None and typed > host.times.get(Source.USER, 0.0):
                host.times[Source.USER] = typed
        if logged_in:
            host.alive(Source.SSH)
        for terminal in held - logged_in.keys():
            reporter.hold(host, HoldKind.CLIENT, f"login:{terminal}", now)  # logged out
        held = set(logged_in)
        if once or stop.wait(interval):
            return
