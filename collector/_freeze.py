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
let them grow to 115 ms (``benchmarks/serve_scale.py``).

Frozen objects are still freed by reference counting (the state's entities are: it holds no
reference cycles). Only a reference cycle that was alive at a freeze and became garbage later is
never collected. Measured: after 60 s of that load, unfreezing and collecting found 6 such
objects among 1.15 million frozen.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any, Final

__all__ = ["freeze_survivors", "freezing"]

_OLDEST: Final = len(gc.get_count()) - 1
"""CPython's oldest generation (``gc.get_count()`` has one count per generation)."""


def freeze_survivors() -> None:
    """Collect what is not frozen yet (costs what was allocated since the last freeze), then
    freeze what survived."""
    gc.collect()
    gc.freeze()


def _after_full_collection(phase: str, info: dict[str, Any]) -> None:
    if phase == "stop" and info["generation"] == _OLDEST:
        gc.freeze()


@contextlib.contextmanager
def freezing() -> Iterator[None]:
    """While in force, freeze what survives each full collection (a ``gc.callbacks`` entry,
    removed on exit; what was frozen stays frozen)."""
    gc.callbacks.append(_after_full_collection)
    try:
        yield
    finally:
        gc.callbacks.remove(_after_full_collection)
