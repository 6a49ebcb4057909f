"""Each reporter's clock offset, estimated from what OTLP says its "now" was.

A reporter stamps every export with its own clock: a metric data point's ``time_unix_nano`` is
the moment its value was collected, and a log record's ``observed_time_unix_nano`` the moment
the SDK observed it (OTLP metrics and logs data models). Receiving them at ``received`` (our
clock) gives one sample of ``received - reported`` = the reporter's offset plus the delay
between collection and receipt, which is never negative. So:

* the estimate is the **smallest sample** of the last :data:`WINDOW_SAMPLES` within
  :data:`WINDOW_NS` (NTP's minimum-delay filter: the least delayed sample is the truest);
* a sample more than :data:`STEP_NS` above the estimate means the reporter's clock stepped back
  (NTP corrected a clock that ran ahead), and starts a new window at once. Erring this way only
  ever makes activity look *newer* (never hibernates what is used);
* an offset within the tolerance (``LASTACTIVE_MAX_CLOCK_SKEW``, 10 s) is not corrected: the
  reporter's times are kept as they are. Beyond it, every timestamp the reporter sends is moved
  by the offset, in both directions (a clock behind no longer makes a typing user idle, a clock
  ahead no longer makes a stale time fresh), and the reporter is listed as skewed.

Times are ``int`` ns since the Unix epoch; offsets are ns, positive when the reporter's clock is
behind ours. Pure: no clock of its own.
"""

from __future__ import annotations

import heapq
import itertools
from array import array
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Final

from lastactive.collector._generations import Generations
from lastactive.collector._record import INT64_MAX
from lastactive.collector._sliced import Sliced

__all__ = [
    "REPORTERS_SLICE",
    "STEP_NS",
    "WINDOW_NS",
    "WINDOW_SAMPLES",
    "ReporterClock",
    "ReporterClocks",
    "ReporterPlace",
    "place",
]

_S: Final = 1_000_000_000
WINDOW_SAMPLES: Final = 8
"""Samples kept per reporter (NTP keeps 8)."""
WINDOW_NS: Final = 300 * _S
"""Samples older than this (by receive time) are forgotten (ns)."""
STEP_NS: Final = 30 * _S
"""A sample this far (ns) above the estimate is a clock step, not a delay: OTLP exporters send
within seconds of collecting (batch delays of 1 to 5 s)."""
FORGET_NS: Final = WINDOW_NS
"""A reporter not heard from for this long (ns) is forgotten by :meth:`ReporterClocks.purge`
(within twice this: reporters live in two generations, so forgetting costs nothing per
reporter): its samples have all left the window, so nothing of its estimate would be used
again, and a
fleet whose sessions each report as their own instance keeps only the last few minutes' worth
(issue 11: memory stays flat under session churn)."""

Key = tuple[str | None, ...]
"""A reporter: the resource attributes that name it (service, instance, host, session)."""
ReporterPlace = tuple[int, str, str, str, str]
"""A reporter's place in the list of reporters (:func:`place`)."""
REPORTERS_SLICE: Final = 2048
"""Reporters a page looks at per slice (~1 us each: a slice holds the loop ~2 ms)."""


@dataclass(slots=True)
class ReporterClock:
    """What is known of one reporter's clock. ``offset`` in ns (positive: behind ours)."""

    key: Key
    offset: int = 0
    last_seen: int = 0
    samples: array[int] = field(default_factory=lambda: array("q"))
    """``received, sample`` pairs (ns), oldest first, at most :data:`WINDOW_SAMPLES` of them: an
    int64 array, ~200 bytes where a deque of tuples took ~1 KB (every instrumented process
    reports as its own instance, so a fleet has a reporter per session: issue 15)."""

    def observe(self, reported: int, received: int) -> int:
        """One export stamped ``reported`` (the reporter's now) arrived at ``received``."""
        sample = received - reported
        samples = self.samples
        horizon = received - WINDOW_NS
        old = 0
        while old < len(samples) and samples[old] < horizon:
            old += 2
        if old:
            del samples[:old]
        if samples and sample > self.offset + STEP_NS:
            del samples[:]  # the reporter's clock stepped back
        samples.append(received)
        samples.append(sample)
        if len(samples) > 2 * WINDOW_SAMPLES:
            del samples[:2]
        self.offset = min(samples[1::2])
        self.last_seen = received
        return self.offset


class ReporterClocks:
    """Every reporter's clock, by :data:`Key`.

    Args:
        tolerance_ns: offsets within ±this are not corrected (and not skewed).
    """

    def __init__(self, tolerance_ns: int) -> None:
        self.tolerance_ns = tolerance_ns
        self._reporters: Generations[Key, ReporterClock] = Generations()
        self._skewed: dict[Key, ReporterClock] = {}
        self._rotate_at: int | None = None
        self.newly_skewed: list[ReporterClock] = []
        """Reporters whose offset went beyond the tolerance since the edge last drained this
        (it logs a warning for each)."""

    def observe(self, key: Key, reported: int, received: int) -> ReporterClock | None:
        """One export of reporter ``key`` stamped ``reported`` (its now; 0 = unset) arrived at
        ``received``; returns the reporter's clock (``None`` for an unknown one without a
        stamp)."""
        reporters = self._reporters
        clock = reporters.current.get(key) or reporters.revive(key)
        if not 0 < reported <= INT64_MAX:  # unset, or no clock (past the year 2262)
            return clock
        if clock is None:
            clock = reporters.current[key] = ReporterClock(key)
        was = self.correction(clock)
        clock.observe(reported, received)
        if self.correction(clock):
            self._skewed[key] = clock
            if not was:
                self.newly_skewed.append(clock)
        elif was:
            del self._skewed[key]
        return clock

    def page_sliced(
        self, size: int, after: ReporterPlace | None, skewed: bool
    ) -> Sliced[list[ReporterClock]]:
        """The first ``size`` reporters (or of those skewed) by :func:`place` after ``after``
        (``None``: from the first), every reporter looked at but :data:`REPORTERS_SLICE` a
        slice (issue 15: every instrumented process is a reporter of its own, so the list is
        as long as the fleet; all at once, 100k took ~0.75 s)."""
        pool = list(self._skewed.values()) if skewed else self.reporters
        first = itemgetter(0)
        best: list[tuple[ReporterPlace, ReporterClock]] = []  # in order, at most ``size``
        for i in range(0, len(pool), REPORTERS_SLICE):
            placed = [(place(c), c) for c in pool[i : i + REPORTERS_SLICE]]
            if after is not None:
                placed = [pair for pair in placed if pair[0] > after]
            if best and len(best) >= size:  # only what would displace the last kept
                last = best[-1][0]
                placed = [pair for pair in placed if pair[0] < last]
            if placed:
                placed.sort(key=first)
                best = list(itertools.islice(heapq.merge(best, placed, key=first), size))
            yield
        return [c for _, c in best]

    @property
    def reporters(self) -> list[ReporterClock]:
        """Every reporter heard from within the last one or two :data:`FORGET_NS`."""
        return self._reporters.values()

    def __len__(self) -> int:
        return len(self._reporters)

    def correction(self, clock: ReporterClock | None) -> int:
        """What to add (ns) to each timestamp of ``clock``'s reporter: its offset when beyond
        the tolerance, else 0."""
        return 0 if clock is None else self._beyond(clock.offset)

    def _beyond(self, offset: int) -> int:
        return offset if abs(offset) > self.tolerance_ns else 0

    def skewed(self) -> list[ReporterClock]:
        """Reporters whose offset is beyond the tolerance, largest first."""
        out = list(self._skewed.values())
        out.sort(key=lambda c: -abs(c.offset))
        return out

    def purge(self, now: int) -> None:
        """Forget reporters not heard from for :data:`FORGET_NS` (at the latest twice that).
        Costs the skewed reporters, not every reporter."""
        if self._rotate_at is None:
            self._rotate_at = now + FORGET_NS
        if now < self._rotate_at:
            return
        self._rotate_at = now + FORGET_NS
        dropped = self._reporters.old
        for key in [k for k in self._skewed if k in dropped]:
            del self._skewed[key]
        self._reporters.rotate()

    def release(self, budget: int) -> bool:
        """Free up to ``budget`` forgotten reporters; ``True`` while more remain."""
        return self._reporters.release(budget)


def place(clock: ReporterClock) -> ReporterPlace:
    """``clock``'s place in the list of reporters: the largest offset first (either way), then
    by its key (unset parts first). No two reporters share one."""
    service, instance, host, session = clock.key
    return (-abs(clock.offset), service or "", instance or "", host or "", session or "")
