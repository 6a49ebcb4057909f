"""A dict split in :data:`PARTS` dicts by the key's hash, so that growing it never rehashes
more than a part at once.

A dict that outgrows its table rehashes every entry in one step: measured on this machine, 20
ms at 700k string keys alone, and a 500-record slice of the start-up load that crossed 699,051
sessions held the event loop 102 ms (54 ms at 349,525; issue 15: loop lag <= 50 ms at 1M
sessions). Split, a part holds ~1/64 of the keys and rehashes them in ~0.3 ms at 1M, and the
parts cross their thresholds at different sizes (their sizes differ by chance), so the work
spreads over thousands of inserts. The same holds for the rehash a dict makes once deleted
entries have used up its free slots (churn: sessions ending and others starting).

Lookups cost a method call and ``hash`` (cached in a ``str``) more than a dict's, ~0.1-0.2 us
(``benchmarks/growth.py``: 1M inserts 0.94 s against a dict's 0.70 s).
Iteration goes part by part (insertion order within a part only).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, MutableMapping
from typing import Final, Generic, TypeVar, overload

__all__ = ["PARTS", "SplitMap"]

K = TypeVar("K")
V = TypeVar("V")
D = TypeVar("D")

PARTS: Final = 64
_MASK: Final = PARTS - 1
_MISSING: Final = object()


class SplitMap(MutableMapping[K, V], Generic[K, V]):
    """A mutable mapping over :data:`PARTS` dicts (see the module docstring)."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[dict[K, V]] = [{} for _ in range(PARTS)]
        self._size = 0

    @overload
    def get(self, key: K, /) -> V | None: ...
    @overload
    def get(self, key: K, default: V | D, /) -> V | D: ...
    def get(self, key: K, default: object = None, /) -> object:
        return self._parts[hash(key) & _MASK].get(key, default)

    def __getitem__(self, key: K) -> V:
        return self._parts[hash(key) & _MASK][key]

    def __setitem__(self, key: K, value: V) -> None:
        part = self._parts[hash(key) & _MASK]
        if key not in part:
            self._size += 1
        part[key] = value

    def __delitem__(self, key: K) -> None:
        del self._parts[hash(key) & _MASK][key]
        self._size -= 1

    @overload
    def pop(self, key: K, /) -> V: ...
    @overload
    def pop(self, key: K, default: V | D, /) -> V | D: ...
    def pop(self, key: K, default: object = _MISSING, /) -> object:
        """``dict.pop``, in one lookup (MutableMapping's makes two).

        Raises:
            KeyError: ``key`` is absent and no ``default`` was given.
        """
        value = self._parts[hash(key) & _MASK].pop(key, _MISSING)
        if value is not _MISSING:
            self._size -= 1
            return value
        if default is _MISSING:
            raise KeyError(key)
        return default

    def __contains__(self, key: object) -> bool:
        return key in self._parts[hash(key) & _MASK]

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[K]:
        return itertools.chain.from_iterable(self._parts)

    @property
    def parts(self) -> list[dict[K, V]]:
        """The dicts themselves (what a caller frees a slice at a time:
        :meth:`~lastactive.collector._generations.Generations.release`)."""
        return self._parts

    def values(self) -> Iterator[V]:  # type: ignore[override]
        """Every value, part by part (a view would cost a walk per ``len``)."""
        return itertools.chain.from_iterable(part.values() for part in self._parts)
