"""Short cyclic-GC pauses with a large, long-lived heap (issue 15).

CPython's full collection walks every tracked object of the oldest generation: with a million
sessions (several objects each) that stalls the event loop for seconds (3.3 s measured at 1M).
So what survives a full collection is moved out of the collector's sight with ``gc.freeze()``:
once per page as the stored state loads (:func:`freeze_survivors`), and, while :func:`freezing`
is in force, right after every full collection CPython starts on its own. A full collection
then walks only what reached the oldest generation since the previous one, and CPython's own
rule (a full collection once the objects promoted since the last one exceed a quarter of what
it kept) keeps that a fraction of what the last one froze: measured at 100k sessions under
10k points/s with queries, the full collections took 5-35 ms each, where a freeze every 10 s
let them grow to 115 ms (``benchmarks/serve_scale.py``). CPython also waits for
10 collections of the middle generation (its default threshold) before it considers a full
one; at 1M sessions under 10k points/s that let 90-120k objects (new counter streams,
transitions) reach the oldest generation between full collections, which then took 25-250 ms.
So while :func:`freezing` is in force a full collection is considered after every
:data:`FULL_AFTER` of them, a few thousand objects each time.

While :func:`freezing` is in force it also times every collection, so the pauses are measured
rather than guessed: per generation, as ``lastactive_gc_pause_seconds`` (issue 15's goal: ≤ 50
ms at 1M sessions).

Frozen objects are still freed by reference counting (the state's entities are: it holds no
reference cycles). Only a reference cycle that was alive at a freeze and became garbage later is
never collected. Measured: after 60 s of that load, unfreezing and collecting found 6 such
objects among 1.15 million frozen.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from typing import Any, Final

from lastactive.collector._lag import Pauses

__all__ = ["FULL_AFTER", "freeze_survivors", "freezing"]

_OLDEST: Final = len(gc.get_count()) - 1
"""CPython's oldest generation (``gc.get_count()`` has one count per generation)."""
FULL_AFTER: Final = 1
"""While :func:`freezing` is in force, the oldest generation's threshold: collections of the
middle generation before a full collection is considered."""


def freeze_survivors() -> None:
    """Collect what is not frozen yet (costs what was allocated since the last freeze), then
    freeze what survived."""
    gc.collect()
    gc.freeze()


class _Collections:
    """A ``gc.callbacks`` entry: times each collection into ``pauses[generation]`` and
    freezes what survives a full one. Collections never overlap (CPython runs one at a time,
    callbacks included), so one start time serves every thread."""

    def __init__(self) -> None:
        self.pauses = tuple(Pauses() for _ in range(_OLDEST + 1))
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info["generation"]
        if generation == _OLDEST:
            gc.freeze()
        self.pauses[generation].observe(time.perf_counter() - self._began, time.monotonic())


@contextlib.contextmanager
def freezing() -> Iterator[tuple[Pauses, ...]]:
    """While in force, freeze what survives each full collection, and time every collection
    (a ``gc.callbacks`` entry, removed on exit; what was frozen stays frozen).

    Yields:
        The pauses (seconds) of the collections of each generation, youngest first (index 2:
        full collections, the freeze included).
    """
    collections = _Collections()
    thresholds = young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_AFTER)
    gc.callbacks.append(collections)
    try:
        yield collections.pauses
    finally:
        gc.callbacks.remove(collections)
        gc.set_threshold(*thresholds)
