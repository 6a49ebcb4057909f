"""One copy of each equal value, for values that millions of entities or streams would otherwise
each keep a copy of (a request's strings and tuples are its own: issue 15)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Interned"]

T = TypeVar("T")


class Interned(Generic[T]):
    """A bounded table of kept values: calling it with a value returns the one kept copy equal
    to it. At most ``limit`` are kept (values come from clients): past it, a value is returned
    as given. ``make`` turns a value into the copy to keep, equal to it (default: the value
    itself; :mod:`~lastactive.collector._state` interns a tuple's strings)."""

    __slots__ = ("_kept", "_make", "limit")

    def __init__(self, limit: int, make: Callable[[T], T] | None = None) -> None:
        self.limit = limit
        self._make = make
        self._kept: dict[T, T] = {}

    def __call__(self, value: T) -> T:
        kept = self._kept.get(value)
        if kept is not None:
            return kept
        if len(self._kept) < self.limit:
            if self._make is not None:
                value = self._make(value)
            self._kept[value] = value
        return value

    def __len__(self) -> int:
        return len(self._kept)
