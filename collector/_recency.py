"""Sessions in "most recent first" order, coarsely, so a page of the list costs what it returns
(issue 15: ``GET /v1/sessions?limit=10`` sorted the fleet, 0.7 s at 1M sessions).

The order is :func:`~lastactive.collector._state.page_key`: by ``last_active`` (engagement,
seed 002), then ``last_seen``, ``first_seen`` and id. The index keeps each session in a bucket
per second: sessions with engagement by the second of their ``last_active``, sessions without
by the second of their ``last_seen`` (they all share ``last_active`` = 0, so ``last_seen``
orders them). A page walks buckets newest first, ranks their members by the exact key, and stops
once it holds ``limit`` sessions that no later bucket can precede. Buckets move only when a
second changes, so the hot path pays a division and, once a second, two dict operations.

``trusted_only`` ranks by trusted engagement, which is never later than ``last_active``: the
walk is the same and stops as soon as the kept sessions' trusted times are beyond every later
bucket's; when fewer than ``limit`` sessions have trusted engagement it walks every engaged
session (documented in the API).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from operator import itemgetter
from typing import TYPE_CHECKING, Final

from lastactive.collector._buckets import SecondBuckets

if TYPE_CHECKING:
    from lastactive.collector._state import Entity, PageKey

__all__ = ["RecencyIndex"]

_NANOS: Final = 1_000_000_000
_first = itemgetter(0)


def _newest_first(
    buckets: SecondBuckets[None], start: int | None
) -> Iterator[tuple[int, dict[Entity, None]]]:
    """(second, members) from ``start`` (or the newest) down."""
    for s in buckets.seconds(maximum=start, reverse=True):
        yield s, buckets.members(s)


class RecencyIndex:
    """Sessions by the second of their ``last_active`` (or, without one, ``last_seen``)."""

    __slots__ = ("_engaged", "_unengaged")

    def __init__(self) -> None:
        self._engaged: SecondBuckets[None] = SecondBuckets()
        self._unengaged: SecondBuckets[None] = SecondBuckets()

    def add(self, e: Entity) -> None:
        """Index session ``e`` as its times are now."""
        if e.last_active is None:
            self._unengaged.add(e, e.last_seen // _NANOS, None)
        else:
            self._engaged.add(e, e.last_active // _NANOS, None)

    def remove(self, e: Entity) -> None:
        """Stop indexing ``e`` (purged, or about to be re-added after a merge)."""
        if e.last_active is None:
            self._unengaged.discard(e, e.last_seen // _NANOS)
        else:
            self._engaged.discard(e, e.last_active // _NANOS)

    def seen(self, e: Entity, t: int) -> None:
        """Session ``e``'s ``last_seen`` moves to ``t`` (ns); call before setting it (only
        needed while ``e`` has no ``last_active``)."""
        if e.last_active is None and t // _NANOS != e.last_seen // _NANOS:
            self._unengaged.discard(e, e.last_seen // _NANOS)
            self._unengaged.add(e, t // _NANOS, None)

    def engaged(self, e: Entity, t: int) -> None:
        """Session ``e``'s ``last_active`` moves to ``t`` (ns); call before setting it."""
        if e.last_active is None:
            self._unengaged.discard(e, e.last_seen // _NANOS)
            self._engaged.add(e, t // _NANOS, None)
        elif t // _NANOS != e.last_active // _NANOS:
            self._engaged.discard(e, e.last_active // _NANOS)
            self._engaged.add(e, t // _NANOS, None)

    def first(
        self,
        limit: int,
        key: Callable[[Entity], PageKey],
        after: PageKey | None = None,
        *,
        exact_buckets: bool = True,
    ) -> list[Entity]:
        """The ``limit`` sessions (``limit`` > 0) with the smallest ``key`` greater than
        ``after``, in order.

        Args:
            key: the session's place (:func:`~lastactive.collector._state.page_key` of its
                view, by ``last_active`` or, with ``trusted_only``, by trusted engagement).
            exact_buckets: ``key`` ranks by ``last_active`` itself (the buckets' own time), so
                buckets before ``after`` are skipped; ``False`` for a key by an earlier time.
        """
        kept: list[tuple[PageKey, Entity]] = []
        start_engaged = start_unengaged = None
        walk_engaged = True
        if after is not None and exact_buckets:
            if after[0] < 0:
                start_engaged = -after[0] // _NANOS
            else:
                walk_engaged, start_unengaged = False, -after[1] // _NANOS
        phases = []
        if walk_engaged:
            phases.append((_newest_first(self._engaged, start_engaged), True))
        phases.append((_newest_first(self._unengaged, start_unengaged), False))
        for buckets, engaged in phases:
            for s, members in buckets:
                for e in members:
                    k = key(e)
                    if after is None or k > after:
                        kept.append((k, e))
                if len(kept) >= limit:
                    kept.sort(key=_first)
                    del kept[limit:]
                    # Every later bucket's keys are at least this (its times are earlier).
                    bound = (-s * _NANOS + 1,) if engaged else (0, -s * _NANOS + 1)
                    if kept[-1][0] < bound:
                        return [e for _, e in kept]
        kept.sort(key=_first)
        return [e for _, e in kept[:limit]]
