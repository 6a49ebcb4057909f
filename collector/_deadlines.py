"""The transition engine's deadlines in the decisions lists' order: ``(deadline, kind, id)``.

Each evaluated entity with a deadline (``hibernate_at``, ns) is kept in the bucket of its
deadline's second (:class:`~lastactive.collector._buckets.SecondBuckets`), so an evaluation that
moves a deadline costs two dict operations, where a sorted list of a million keys cost 3.5-5 us
an insert and as much a removal (issue 15: at 1M sessions most of the start-up's priming of the
index, and a move per evaluation that changes a deadline on every tick).

A walk (:meth:`DeadlineIndex.irange`, what ``/v1/decisions`` reads) ranks a second's members
the first time it reads that second, and the order is kept from then on (an insert or a removal
in C, ~1 us) until the second has no members: a second shared by many (a fleet's sessions
often go idle in the same second) is sorted once, not at every walk. Only seconds a walk read
are ranked: those due now and due soon, as far as the lists' ``limit`` takes the walks.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator
from typing import TYPE_CHECKING, Final

from lastactive.collector._buckets import SecondBuckets

if TYPE_CHECKING:
    from lastactive.collector._state import Entity, Kind

__all__ = ["DeadlineIndex", "IndexedKey"]

_NANOS: Final = 1_000_000_000

IndexedKey = tuple[int, "Kind", str, "Entity"]
"""``(deadline ns, kind, id, entity)``: an entry of the index, in the lists' order."""


class DeadlineIndex:
    """Entities by deadline (ns), walked in ``(deadline, kind, id)`` order."""

    __slots__ = ("_buckets", "_ranked")

    def __init__(self) -> None:
        self._buckets: SecondBuckets[int] = SecondBuckets()
        self._ranked: dict[int, list[IndexedKey]] = {}
        """A second's members in order: made by the first walk that reads the second, then
        kept as its members come and go, until it has none."""

    def add(self, e: Entity, deadline: int) -> None:
        """Index ``e`` at ``deadline`` (ns). ``e`` must not be indexed already."""
        s = deadline // _NANOS
        self._buckets.add(e, s, deadline)
        ranked = self._ranked
        if ranked:
            order = ranked.get(s)
            if order is not None:
                insort(order, (deadline, e.kind, e.id, e))

    def remove(self, e: Entity, deadline: int) -> None:
        """Stop indexing ``e``, indexed at ``deadline`` (ns)."""
        s = deadline // _NANOS
        emptied = self._buckets.discard(e, s)
        ranked = self._ranked
        if ranked:
            order = ranked.get(s)
            if order is None:
                return
            if emptied:
                del ranked[s]
                return
            # (deadline, kind, id) sorts just before its entry: found in C, no entity compared
            i = bisect_left(order, (deadline, e.kind, e.id))
            if i < len(order) and order[i][3] is e:
                del order[i]

    def irange(
        self, minimum: tuple[int] | IndexedKey | None, maximum: int, inclusive: bool = True
    ) -> Iterator[IndexedKey]:
        """The entries from ``minimum`` (a key, or a deadline alone as ``(ns,)``; ``None``: the
        earliest), included or not, to a deadline of ``maximum`` (ns) included, in order. The
        index must not change while it is read."""
        buckets, ranked = self._buckets, self._ranked
        first = None if minimum is None else minimum[0] // _NANOS
        for s in buckets.seconds(first, maximum // _NANOS):
            order = ranked.get(s)
            if order is None:
                members = buckets.members(s).items()
                order = ranked[s] = sorted((d, e.kind, e.id, e) for e, d in members)
            i = 0
            if s == first and minimum is not None:
                # By (deadline, kind, id): an entity is never compared with another.
                bound = minimum[:3]
                if inclusive:
                    i = bisect_left(order, bound, key=_listed)
                else:
                    i = bisect_right(order, bound, key=_listed)
            for n in range(i, len(order)):
                key = order[n]
                if key[0] > maximum:
                    return
                yield key


def _listed(key: IndexedKey) -> tuple[int, Kind, str]:
    return key[:3]
