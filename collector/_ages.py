"""Fleet aggregates of activity times, kept as activity arrives: ``/metrics`` reads them instead
of walking every session (issue 15: a walk took 1.4 s at 1M sessions).

Both count in whole seconds (a time ``t`` in ns is second ``t // 1e9``; "now" likewise):

* :class:`IdleHistogram`: sessions by seconds since their idle base (the last activity of the
  classes that end idleness, else ``first_seen``; :func:`~lastactive.collector._activity.
  idle_since`), as a count per idle-base second. Seconds older than the largest bound are
  merged into one count (and the sum of their seconds) at each reading, so a reading walks at
  most the largest bound's worth of distinct seconds, whatever the fleet.
* :class:`RecentClasses`: sessions with activity of each class in the last :data:`RECENT_S`
  seconds (seed 004's "active in the last 5 minutes"). A session carries one bit per class
  (``Entity.recent``); a bit is set when activity of its class arrives and a check of the
  session is scheduled for when that activity stops being recent; the check clears what is no
  longer recent and schedules the next. The transition engine's tick runs the checks as they
  come due, a slice at a time; a reading runs only those the tick has not reached yet, not the
  fleet; the hot path pays a bit test. A check is also the owner's time-ordered look at a
  session that went quiet (``on_check``: the state gives back rate windows that lapsed).
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from lastactive.collector._activity import latest_by_class
from lastactive.conventions import ActivityClass

if TYPE_CHECKING:
    from lastactive.collector._state import Entity

__all__ = ["CLASS_BITS", "IDLE_BUCKETS", "RECENT_S", "IdleHistogram", "RecentClasses"]

_NANOS: Final = 1_000_000_000

IDLE_BUCKETS: Final = (60, 300, 900, 3600, 4 * 3600, 86400)
"""Upper bounds (seconds) of the idle-time distribution across sessions."""

RECENT_S: Final = 300
"""A session counts as recently present/engaged/working within this many seconds (seed 004's
"active in the last 5 minutes")."""

_CLASSES: Final = tuple(ActivityClass)
CLASS_BITS: Final = {cls: 1 << i for i, cls in enumerate(_CLASSES)}
"""Each activity class's bit in ``Entity.recent``."""


class IdleHistogram:
    """Sessions per idle-base second (see the module docstring)."""

    __slots__ = ("_counts", "_old_before", "_old_count", "_old_sum")

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}
        self._old_before = 0
        """Seconds before this are merged into ``_old_count`` and ``_old_sum``."""
        self._old_count = 0
        self._old_sum = 0

    def add(self, base: int, n: int = 1) -> None:
        """``n`` sessions (negative: fewer) have their idle base at ``base`` (ns)."""
        s = base // _NANOS
        if s < self._old_before:
            self._old_count += n
            self._old_sum += n * s
            return
        counts = self._counts
        left = counts.get(s, 0) + n
        if left:
            counts[s] = left
        else:
            del counts[s]

    def move(self, was: int, base: int) -> None:
        """One session's idle base moved from ``was`` to ``base`` (ns)."""
        if was // _NANOS != base // _NANOS:
            self.add(was, -1)
            self.add(base, 1)

    def histogram(self, now: int, bounds: Sequence[int] = IDLE_BUCKETS) -> tuple[list[int], int]:
        """Sessions per bucket at ``now`` (ns): counts (not cumulative) for each of ``bounds``
        (seconds, ascending: idle seconds <= bound and above the previous) and +Inf, and the
        sum of idle seconds. Idle seconds are ``max(0, now_s - base_s)``."""
        now_s = now // _NANOS
        horizon = now_s - bounds[-1]  # a base second before this is beyond the last bound
        out = [0] * (len(bounds) + 1)
        total = 0
        old = []
        for s, n in self._counts.items():
            if s < horizon:
                old.append(s)
                continue
            idle = now_s - s if s < now_s else 0
            out[bisect.bisect_left(bounds, idle)] += n
            total += n * idle
        counts = self._counts
        for s in old:
            n = counts.pop(s)
            self._old_count += n
            self._old_sum += n * s
        self._old_before = max(self._old_before, horizon)
        out[-1] += self._old_count
        total += self._old_count * now_s - self._old_sum
        return out, total


class RecentClasses:
    """Sessions with recent activity per class (see the module docstring).

    Args:
        on_check: called with each session checked and the check's "now" (ns), before its
            bits are cleared: at most :data:`RECENT_S` seconds after each of its activities,
            and again every :data:`RECENT_S` seconds while any class stays recent.
    """

    __slots__ = ("_counts", "_due", "_on_check", "_seconds")

    def __init__(self, on_check: Callable[[Entity, int], None] | None = None) -> None:
        self._on_check = on_check
        self._counts = [0] * len(_CLASSES)
        self._seconds: list[int] = []
        """A heap of the seconds :attr:`_due` has had a bucket for since they were last
        popped (one emptied meanwhile is skipped when popped): so a tick with nothing due
        looks at one second, not at every bucket."""
        self._due: dict[int, tuple[int, dict[Entity, None]]] = {}
        """Second -> (that second, the sessions to check then): each session is in one, its
        ``recent_due``, which is the same int object as the key (not one of its own per
        session: 32 bytes each at 1M sessions, issue 15)."""

    def saw(self, e: Entity, bit: int, t: int) -> None:
        """Session ``e`` (bit ``bit`` not yet set) had activity of that class at ``t`` (ns)."""
        e.recent |= bit
        self._counts[bit.bit_length() - 1] += 1
        self._schedule(e, t // _NANOS + RECENT_S + 1)

    def _schedule(self, e: Entity, due: int) -> None:
        if e.recent_due and due >= e.recent_due:
            return  # the earlier check schedules the next
        self._unschedule(e)
        bucket = self._due.get(due)
        if bucket is None:
            self._due[due] = (due, {e: None})
            heapq.heappush(self._seconds, due)
            e.recent_due = due
        else:
            e.recent_due, entries = bucket
            entries[e] = None

    def _unschedule(self, e: Entity) -> None:
        bucket = self._due.get(e.recent_due)
        if bucket is not None:
            entries = bucket[1]
            entries.pop(e, None)
            if not entries:
                del self._due[e.recent_due]
        e.recent_due = 0

    def forget(self, e: Entity) -> None:
        """Session ``e`` is no longer counted (purged)."""
        bits, counts = e.recent, self._counts
        for i in range(len(counts)):
            if bits >> i & 1:
                counts[i] -= 1
        self._unschedule(e)
        e.recent = 0

    def advance(self, now: int, budget: int | None = None) -> bool:
        """Run the checks due at ``now`` (ns), at most ``budget`` of them (``None``: all), the
        earliest second first; return whether due ones are left. The transition engine's tick
        runs them a slice at a time, so they never pile up for a reading: with 1M sessions
        in use a check comes due for each every :data:`RECENT_S` seconds (~3k a second), and
        read only at a scrape they held the loop for what came due since the last one."""
        now_s = now // _NANOS
        horizon = now_s - RECENT_S
        due, seconds, on_check = self._due, self._seconds, self._on_check
        left = -1 if budget is None else budget
        while seconds and seconds[0] <= now_s:
            bucket = due.get(seconds[0])
            entries = bucket[1] if bucket is not None else None
            while entries:
                if not left:
                    return True
                left -= 1
                e = entries.popitem()[0]
                e.recent_due = 0
                if on_check is not None:
                    on_check(e, now)
                self._check(e, horizon)  # reschedules after ``now``: never into this bucket
            if bucket is not None:
                del due[seconds[0]]
            heapq.heappop(seconds)
        return False

    def _check(self, e: Entity, horizon: int) -> None:
        """Clear ``e``'s classes with nothing since second ``horizon``; schedule the next check
        of those still recent."""
        latest = latest_by_class(e.source_pairs())
        bits, nxt = e.recent, 0
        for i, cls in enumerate(_CLASSES):
            if bits >> i & 1:
                s = latest.get(cls, 0) // _NANOS
                if s < horizon:
                    bits &= ~(1 << i)
                    self._counts[i] -= 1
                elif not nxt or s < nxt:
                    nxt = s
        e.recent = bits
        if bits:
            self._schedule(e, nxt + RECENT_S + 1)

    def counts(self, now: int) -> dict[ActivityClass, int]:
        """Sessions with activity of each class within :data:`RECENT_S` seconds of ``now``
        (ns): a class's latest second >= ``now_s - RECENT_S``. Runs the checks that came due
        and the tick has not run yet (:meth:`advance`)."""
        self.advance(now)
        return dict(zip(_CLASSES, self._counts, strict=True))
