"""The deadline index walks what a sorted list of ``(deadline, kind, id)`` would, whatever was
added, moved and taken out between walks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lastactive.collector._deadlines import DeadlineIndex
from lastactive.collector._state import Entity, Kind

S = 1_000_000_000
T0 = 1_700_000_000 * S

_ENTITIES = [Entity(kind, f"e{i}", T0, T0) for i in range(4) for kind in (Kind.SESSION, Kind.HOST)]

# A deadline in one of three seconds (ties of the very same ns included), before the epoch too.
_deadlines = st.sampled_from([T0, T0 + 1, T0 + S - 1, T0 + S, T0 + 5 * S, -S - 1, -1, 0])
_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "drop", "walk"]),
        st.integers(0, len(_ENTITIES) - 1),
        _deadlines,
        _deadlines,
        st.booleans(),
        st.integers(0, 30),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_walks_equal_a_sorted_list(ops: list[tuple[str, int, int, int, bool, int]]) -> None:
    index = DeadlineIndex()
    model: dict[Entity, int] = {}
    for op, i, deadline, maximum, inclusive, skip in ops:
        e = _ENTITIES[i]
        if op == "set":  # index it, or move it (its old deadline taken out first)
            if e in model:
                index.remove(e, model[e])
            index.add(e, deadline)
            model[e] = deadline
        elif op == "drop" and e in model:
            index.remove(e, model.pop(e))
        else:
            keys = sorted((d, x.kind, x.id, x) for x, d in model.items())
            assert list(index.irange(None, maximum)) == [k for k in keys if k[0] <= maximum]
            # From a key already read (excluded) or a deadline alone (included), as the
            # decisions walk resumes: the same as the list from there.
            start = keys[min(skip, len(keys) - 1)][:4] if keys and skip else (deadline,)
            included = inclusive or len(start) == 1
            got = list(index.irange(start, maximum, included))
            bound = start[:3]
            assert got == [
                k
                for k in keys
                if (k[:3] >= bound if included else k[:3] > bound) and k[0] <= maximum
            ]


def test_a_second_is_ranked_once_then_kept_in_order() -> None:
    """A walk ranks a second; the order is then kept as members come and go (the same list,
    not made again) and dropped once the second is empty."""
    index = DeadlineIndex()
    a, b, c = _ENTITIES[:3]
    index.add(a, T0 + 3)
    index.add(b, T0 + 1)
    assert [k[3] for k in index.irange(None, T0 + S)] == [b, a]
    ranked = index._ranked[T0 // S]
    index.remove(b, T0 + 1)
    index.add(c, T0 + 2)
    index.add(b, T0 + 3)  # a tie of deadlines: by kind, then id
    assert [k[3] for k in index.irange(None, T0 + S)] == [c, *sorted([a, b])]
    assert index._ranked[T0 // S] is ranked
    for e, d in ((a, T0 + 3), (b, T0 + 3), (c, T0 + 2)):
        index.remove(e, d)
    assert T0 // S not in index._ranked and list(index.irange(None, T0 + S)) == []
