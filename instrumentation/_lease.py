"""``lastactive lease``: hold a busy lease on a session while a command runs.

Process supervision beside ``lastactive run``: the command runs as a child, SIGTERM, SIGINT and
SIGHUP to the holder go to it (whichever thread the kernel hands them to, see
:mod:`~._signals`), and the lease is renewed while it runs and released when it ends, however it
ends. A holder that is SIGKILLed leaves a lease that lapses ``ttl`` seconds after its last
renewal.
"""

from __future__ import annotations

import signal
import subprocess
import sys

from lastactive.instrumentation._reporter import Reporter
from lastactive.instrumentation._signals import wait_child, wakeup_fd


def lease(argv: list[str], reporter: Reporter, session_id: str, ttl: float) -> int:
    """Run ``argv`` under a lease of ``ttl`` seconds on ``session_id``.

    Returns:
        The command's exit status (128 + N when killed by signal N; 127 when it cannot be
        started).
    """
    tracker = reporter.session(session_id)
    with reporter.lease(tracker, ttl):
        try:
            child = subprocess.Popen(argv)
        except OSError as exc:
            print(f"lastactive lease: {argv[0]}: {exc.strerror}", file=sys.stderr)
            return 127
        with wakeup_fd() as wake:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, lambda signum, frame: child.send_signal(signum))
            code = wait_child(child, wake)
    return 128 - code if code < 0 else code
