"""The bounded table of kept values."""

from __future__ import annotations

from lastactive.collector._interned import Interned


def test_equal_values_come_back_as_one_kept_copy_up_to_the_limit() -> None:
    made: list[tuple[str, ...]] = []

    def make(names: tuple[str, ...]) -> tuple[str, ...]:
        made.append(names)
        return tuple(names)

    kept = Interned[tuple[str, ...]](2, make)
    first = kept(tuple(["a", "b"]))
    again = tuple(["a", "b"])  # equal, another object (literals would be one constant)
    assert kept(again) is first and again is not first and made == [first]  # made once
    assert kept(("c",)) == ("c",) and len(kept) == 2
    beyond = tuple(["d"])
    assert kept(beyond) is beyond and kept(tuple(["d"])) is not beyond  # past the limit: as given
    assert len(kept) == 2 and len(made) == 2
