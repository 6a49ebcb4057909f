"""Work in slices: at once, or a slice per turn of the event loop."""

from __future__ import annotations

import asyncio

from lastactive.collector._sliced import mapped, on_loop, turning, whole
from tests.helpers import turns_while


def test_mapped_maps_a_slice_of_items_per_step() -> None:
    work = mapped(str, range(10), 4)
    assert [next(work) for _ in range(3)] == [None, None, None]  # 4 + 4 + 2 items
    assert whole(work) == [str(i) for i in range(10)]
    assert whole(mapped(str, [], 4)) == []


def test_on_loop_frees_the_loop_between_slices() -> None:
    turns, out = asyncio.run(turns_while(on_loop(mapped(str, range(10), 4))))
    assert out == [str(i) for i in range(10)]
    assert turns == 3  # after each of the three slices


def test_turning_frees_the_loop_after_every_slice_of_items() -> None:
    async def collect() -> list[int]:
        return [x async for x in turning(range(10), 4)]

    turns, out = asyncio.run(turns_while(collect()))
    assert out == list(range(10))
    assert turns == 2  # after the 4th and the 8th item
