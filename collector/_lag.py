"""Event-loop lag: how long the loop was blocked, measured by a task that sleeps
:data:`PROBE_S` and notes how late it woke (issue 15's goal: ≤ 50 ms at 1M sessions).

Every receiver, query and tick shares the one event loop, so its lag is the delay everything
else sees: an operator alerts on it, and ``benchmarks/serve_scale.py`` reads it from
``/metrics`` under load. Kept as a histogram (``lastactive_event_loop_lag_seconds``) and as the
longest lag of the last :data:`WINDOW_S` seconds (a gauge), at the cost of one wake-up per
probe. :class:`Pauses` keeps any such durations (the cyclic GC's pauses use it too:
:mod:`lastactive.collector._freeze`).
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import deque
from typing import Final

__all__ = ["LAG_BUCKETS", "PROBE_S", "WINDOW_S", "LoopLag", "Pauses"]

PROBE_S: Final = 0.05
"""Seconds between probes."""
LAG_BUCKETS: Final = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Upper bounds (seconds) of the lag (and GC pause) histograms."""
WINDOW_S: Final = 60
"""The longest-lag gauge covers this many seconds."""


class Pauses:
    """Durations the event loop was held (seconds): ``counts`` per :data:`LAG_BUCKETS` bound
    and +Inf (not cumulative), their ``sum``, and :meth:`longest`."""

    def __init__(self) -> None:
        self.counts = [0] * (len(LAG_BUCKETS) + 1)
        self.sum = 0.0
        self._seconds: deque[tuple[int, float]] = deque()
        """(monotonic second, longest lag in it), oldest first, the last WINDOW_S seconds."""

    def observe(self, lag: float, at: float) -> None:
        """One pause of ``lag`` seconds, ended at monotonic time ``at`` (seconds)."""
        self.counts[bisect.bisect_left(LAG_BUCKETS, lag)] += 1
        self.sum += lag
        second, seconds = int(at), self._seconds
        if seconds and seconds[-1][0] == second:
            if lag > seconds[-1][1]:
                seconds[-1] = (second, lag)
        else:
            seconds.append((second, lag))
        while seconds[0][0] <= second - WINDOW_S:
            seconds.popleft()

    def longest(self, at: float) -> float:
        """The longest pause (seconds) observed in the :data:`WINDOW_S` seconds before ``at``
        (monotonic seconds)."""
        horizon = int(at) - WINDOW_S
        return max((lag for second, lag in self._seconds if second > horizon), default=0.0)


class LoopLag(Pauses):
    """Probes of the event loop's lag: each probe observes how late it woke (seconds)."""

    async def run(self) -> None:
        """Probe until cancelled."""
        while True:
            due = time.monotonic() + PROBE_S
            await asyncio.sleep(PROBE_S)
            woke = time.monotonic()
            self.observe(max(0.0, woke - due), woke)
