"""Work done a slice at a time: a generator that yields between slices and returns its result,
so the event loop answers others between the slices (issue 15: a request that looks at
thousands of entities must not hold the loop for all of them), and a caller without a loop
(tests, benchmarks) runs it whole."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Generator, Iterable, Sequence
from typing import Final, TypeVar

__all__ = ["ENCODE_SLICE", "Sliced", "mapped", "on_loop", "turning", "whole"]

ENCODE_SLICE: Final = 128
"""Entries of an answer an edge encodes per slice (a JSON object or a protobuf message from
each: ~3-10 us)."""

T = TypeVar("T")
R = TypeVar("R")

Sliced = Generator[None, None, T]
"""Work in slices: ``next`` does the next slice; the result is ``StopIteration.value``."""


def whole(work: Sliced[T]) -> T:
    """Do every slice of ``work`` at once; its result."""
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]


async def on_loop(work: Sliced[T]) -> T:
    """Do ``work`` a slice per turn of the event loop; its result."""
    while True:
        try:
            next(work)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        await asyncio.sleep(0)


def mapped(fn: Callable[[T], R], items: Sequence[T], per: int) -> Sliced[list[R]]:
    """``[fn(x) for x in items]``, ``per`` items a slice."""
    out: list[R] = []
    for i in range(0, len(items), per):
        out.extend(map(fn, items[i : i + per]))
        yield
    return out


async def turning(items: Iterable[T], per: int) -> AsyncIterator[T]:
    """``items``, the event loop turning after every ``per`` of them: the slices of a coroutine
    that also awaits between them (a replica's walk of pages it reads from the store)."""
    left = per
    for x in items:
        yield x
        left -= 1
        if not left:
            left = per
            await asyncio.sleep(0)
