"""Short cyclic-GC pauses with a large, long-lived heap (issue 15).

CPython's full collection walks every tracked object of the oldest generation: with a million
sessions (several objects each) that stalls the event loop for seconds (3.3 s measured at 1M).
So objects that survived a while are moved out of the collector's sight with ``gc.freeze()``:
at start, once the state is loaded, and then every :data:`FREEZE_EVERY_S` after a collection
of what is not frozen yet. A full collection then walks only what was allocated since the last
freeze. Frozen objects are still freed by reference counting (the state's entities are: it holds
no reference cycles); only a reference cycle that became garbage after it was frozen is never
collected, a leak limited to cycles that had already lived :data:`FREEZE_EVERY_S`.
"""

from __future__ import annotations

import gc
from typing import Final

__all__ = ["FREEZE_EVERY_S", "freeze_survivors"]

FREEZE_EVERY_S: Final = 10.0
"""Seconds between freezes: a collection then walks at most what this long allocated."""


def freeze_survivors() -> None:
    """Collect what is not frozen yet (costs what was allocated since the last call), then
    freeze what survived."""
    gc.collect()
    gc.freeze()
