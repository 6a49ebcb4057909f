"""SplitMap answers as a dict does, whatever the operations; its parts share the keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lastactive.collector._split_map import PARTS, SplitMap

_KEYS = st.text(max_size=3)
_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("set"), _KEYS, st.integers()),
        st.tuples(st.just("del"), _KEYS, st.none()),
        st.tuples(st.just("pop"), _KEYS, st.none()),
        st.tuples(st.just("take"), _KEYS, st.none()),
    ),
    max_size=60,
)


@given(_OPS)
def test_it_answers_as_a_dict(ops: list[tuple[str, str, int | None]]) -> None:
    split: SplitMap[str, int] = SplitMap()
    plain: dict[str, int] = {}
    for op, key, value in ops:
        if op == "set":
            assert value is not None
            split[key] = plain[key] = value
        elif op == "del" and key in plain:
            del split[key], plain[key]
        elif op == "pop":
            assert split.pop(key, None) == plain.pop(key, None)
        elif op == "take":  # pop without a default
            if key in plain:
                assert split.pop(key) == plain.pop(key)
            else:
                with pytest.raises(KeyError):
                    split.pop(key)
        assert len(split) == len(plain)
        assert (key in split) == (key in plain)
        assert split.get(key) == plain.get(key) and split.get(key, -1) == plain.get(key, -1)
    assert sorted(split) == sorted(plain)
    assert sorted(split.values()) == sorted(plain.values())
    assert dict(split.items()) == plain


def test_the_parts_share_the_keys() -> None:
    split: SplitMap[str, int] = SplitMap()
    for i in range(64_000):
        split[f"session-{i:08d}"] = i
    sizes = [len(part) for part in split.parts]
    assert len(sizes) == PARTS and sum(sizes) == 64_000
    assert max(sizes) < 2 * 64_000 // PARTS  # none holds a large share: none rehashes much
