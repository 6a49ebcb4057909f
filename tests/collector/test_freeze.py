"""``collector/_freeze.py``: survivors leave the cyclic GC's sight; new cycles are still
collected; frozen objects are still freed by reference counting."""

from __future__ import annotations

import gc
import sys
import time
import weakref
from collections.abc import Iterator

import pytest

from lastactive.collector._freeze import FULL_AFTER, freeze_survivors, freezing
from lastactive.collector._state import ActivityState, Identity


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()


def test_survivors_are_frozen_and_later_cycles_still_collected() -> None:
    state = ActivityState()
    for i in range(1000):
        state.resolve(Identity(session_id=f"s{i}"), 1)
    freeze_survivors()
    frozen = gc.get_freeze_count()
    assert frozen >= 1000  # the entities (and everything else alive) are out of sight
    a, b = Node(), Node()
    a.other, b.other = b, a  # a cycle made after the freeze, then dropped
    gone = weakref.ref(a)
    del a, b
    freeze_survivors()
    assert gone() is None


def test_frozen_entities_are_freed_when_purged() -> None:
    state = ActivityState()
    ents = state.resolve(Identity(session_id="s"), 1)
    state.activity(ents, "exit", 2)
    freeze_survivors()
    (e,) = ents
    del ents
    (purged,) = state.purge(10, 1)[0]
    assert purged is e
    del purged
    # Only this frame's name (and getrefcount's argument) hold it: deleting the name frees it
    # by reference counting, no collection needed.
    assert sys.getrefcount(e) == 2


def test_freezing_freezes_what_survives_each_full_collection_and_stops_on_exit() -> None:
    freeze_survivors()
    kept = [Node() for _ in range(1000)]
    with freezing():
        before = gc.get_freeze_count()
        gc.collect(1)  # a younger generation: nothing frozen
        assert gc.get_freeze_count() == before
        gc.collect()  # as CPython's own full collection: the survivors are frozen
        assert gc.get_freeze_count() >= before + len(kept)
    later = [Node() for _ in range(1000)]
    frozen = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() == frozen  # no longer in force
    assert len(kept) == len(later)


def test_freezing_times_every_collection_by_generation() -> None:
    thresholds = gc.get_threshold()
    with freezing() as pauses:
        assert gc.get_threshold() == (*thresholds[:2], FULL_AFTER)
        assert len(pauses) == 3 and all(sum(p.counts) == 0 for p in pauses)
        gc.collect(0)
        young = sum(pauses[0].counts)
        gc.collect(1)
        gc.collect()
        assert young >= 1 and sum(pauses[1].counts) >= 1 and sum(pauses[2].counts) >= 1
        assert pauses[2].longest(time.monotonic()) > 0 and pauses[2].sum > 0
    full = sum(pauses[2].counts)
    gc.collect()
    assert sum(pauses[2].counts) == full  # no longer timed
    assert gc.get_threshold() == thresholds
