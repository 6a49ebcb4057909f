"""A map that forgets what was not used for a period, at a cost per use rather than per entry.

Two generations: entries live in :attr:`Generations.current`; :meth:`Generations.rotate` makes
it :attr:`Generations.old` and starts an empty one; an entry used again moves back
(:meth:`Generations.revive`); one still in ``old`` at the next rotation was not used for a whole
period and is dropped. So an entry unused for one period is gone within two, and no step walks
every entry (a comprehension over a million counter streams would block the event loop for a
second; issue 15). Dropped generations are freed a slice at a time (:meth:`Generations.release`),
since freeing a million objects at once blocks too. The hot paths read ``current`` directly
(``g.current.get(k) or g.revive(k)``): one lookup when the entry is current.

Each generation is a :class:`~lastactive.collector._split_map.SplitMap`: after a rotation the
current one grows back from empty as entries are used again, and a dict growing past 1.4M
counter streams (1M sessions reporting bytes both ways) held the loop 50 ms in one insert,
rehashing them all, 114 ms under churn (issue 15: lag <= 50 ms; ``benchmarks/growth.py``).
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from lastactive.collector._split_map import SplitMap

__all__ = ["Generations"]

K = TypeVar("K")
V = TypeVar("V")


class Generations(Generic[K, V]):
    """Entries by key, in two generations (see the module docstring)."""

    __slots__ = ("_retired", "current", "old")

    def __init__(self) -> None:
        self.current: SplitMap[K, V] = SplitMap()
        self.old: SplitMap[K, V] = SplitMap()
        self._retired: list[dict[Any, Any]] = []

    def revive(self, key: K) -> V | None:
        """The entry ``key`` from the old generation, moved back into the current one."""
        if not self.old:
            return None
        value = self.old.pop(key, None)
        if value is not None:
            self.current[key] = value
        return value

    def get(self, key: K) -> V | None:
        """The entry ``key`` in either generation, without moving it."""
        value = self.current.get(key)
        return self.old.get(key) if value is None else value

    def rotate(self) -> None:
        """Drop the old generation (to :meth:`release`); the current one becomes old."""
        self.retire(self.old)
        self.old, self.current = self.current, SplitMap()

    def retire(self, entries: dict[Any, Any] | SplitMap[Any, Any]) -> None:
        """Hand ``entries`` (dropped: a dict or a SplitMap whose freeing should not block) to
        :meth:`release`."""
        if isinstance(entries, SplitMap):
            self._retired.extend(part for part in entries.parts if part)
        elif entries:
            self._retired.append(entries)

    def release(self, budget: int) -> bool:
        """Free up to ``budget`` dropped entries; ``True`` while more remain (the caller yields
        to the event loop between slices)."""
        retired = self._retired
        while retired and budget > 0:
            entries = retired[-1]
            n = min(budget, len(entries))
            for _ in range(n):
                entries.popitem()
            budget -= n
            if not entries:
                retired.pop()
        return bool(retired)

    def __len__(self) -> int:
        return len(self.current) + len(self.old)

    def values(self) -> list[V]:
        """Every entry of both generations."""
        return [*self.current.values(), *self.old.values()]
