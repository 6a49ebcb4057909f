"""Entities in a bucket per second of a time (ns), the seconds kept in order: the base of the
indexes that answer "in order of a time" questions without a sorted structure of every entity.

Moving an entity costs a division and a dict operation or two; only a second's first member and
its last pay the sorted structure of seconds (a few per second of wall time, where a
:class:`~sortedcontainers.SortedList` of a million entries cost 3.5-5 us an insert or a
removal: issue 15). A walk takes the seconds in order and ranks each second's members itself.
Used by the recency index (most recent first: :mod:`~lastactive.collector._recency`) and the
transition engine's deadline index (earliest first: :mod:`~lastactive.collector._deadlines`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Generic, TypeVar

from sortedcontainers import SortedList

if TYPE_CHECKING:
    from lastactive.collector._state import Entity

__all__ = ["SecondBuckets"]

_V = TypeVar("_V")


class SecondBuckets(Generic[_V]):
    """Entities by a second (an int: a time in ns ``// NANOS``), each with a value."""

    __slots__ = ("_members", "_seconds")

    def __init__(self) -> None:
        self._members: dict[int, dict[Entity, _V]] = {}
        self._seconds = SortedList()

    def add(self, e: Entity, s: int, value: _V) -> bool:
        """Put ``e`` in second ``s`` with ``value``; ``True`` when ``s`` had no members."""
        members = self._members.get(s)
        if members is None:
            self._members[s] = {e: value}
            self._seconds.add(s)
            return True
        members[e] = value
        return False

    def discard(self, e: Entity, s: int) -> bool:
        """Take ``e`` out of second ``s`` (if there); ``True`` when ``s`` is left empty (it is
        then forgotten)."""
        members = self._members.get(s)
        if members is None:
            return False
        members.pop(e, None)
        if members:
            return False
        del self._members[s]
        self._seconds.remove(s)
        return True

    def members(self, s: int) -> dict[Entity, _V]:
        """Second ``s``'s members and their values (one :meth:`seconds` gave: it has some).
        The caller must not change it.

        Raises:
            KeyError: ``s`` has no members.
        """
        return self._members[s]

    def seconds(
        self, minimum: int | None = None, maximum: int | None = None, *, reverse: bool = False
    ) -> Iterator[int]:
        """The seconds with members from ``minimum`` to ``maximum`` (both included; ``None``:
        unbounded), earliest first or (``reverse``) latest first. The buckets must not change
        while it is read."""
        return iter(self._seconds.irange(minimum, maximum, reverse=reverse))
