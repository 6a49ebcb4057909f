"""Pages of "most recent first" from the recency index equal a sort of every session."""

from __future__ import annotations

import random

from lastactive.collector._state import (
    VIEWS_SLICE,
    ActivityState,
    Identity,
    Kind,
    page_key,
    view,
)
from tests.helpers import slices_of

S = 1_000_000_000
T0 = 1_700_000_000 * S


def _sorted(state: ActivityState, now: int, trusted_only: bool) -> list[str]:
    views = [view(e, now, trusted_only) for e in state.entities[Kind.SESSION].values()]
    return [v.id for v in sorted(views, key=page_key)]


def test_pages_equal_a_sort_of_every_session() -> None:
    """Untrusted and trusted engagement, sessions without any (ordered by last_seen), times in
    the same second, purges and a reload: every page from every page token equals the sort,
    trusted or not."""
    rng = random.Random(5)
    state = ActivityState(max_skew_ns=10 * S)
    now = T0
    for step in range(250):
        now += rng.choice([0, 1, 2, 30, 700]) * S
        for _ in range(rng.randrange(1, 12)):
            sid = f"s{rng.randrange(80)}"
            t = now - rng.choice([0, 0, 1, 5, 100]) * S - rng.randrange(S)
            ents = state.resolve(Identity(session_id=sid, host_id="h"), now)
            source = rng.choice(["input", "prompt", "user", "output", None, None, "exit"])
            if source is None:
                state.seen(ents, t)
            else:
                state.activity(ents, source, t)
        if step % 50 == 49:
            state.purge(now, 1000 * S)
        if step % 83 == 82:
            records = [e.record() for e in state.all_entities()]
            state = ActivityState(max_skew_ns=10 * S)
            state.load(records)
            state.load(records)
        for trusted_only in (False, True):
            want = _sorted(state, now, trusted_only)
            limit = rng.choice([1, 3, 10])
            got: list[str] = []
            after = None
            while True:
                page = state.sessions(now, limit=limit, trusted_only=trusted_only, after=after)
                got += [v.id for v in page]
                if len(page) < limit:
                    break
                after = page_key(page[-1])
            assert got == want, (step, trusted_only)


def test_a_session_moves_when_engaged_or_seen_in_a_later_second() -> None:
    state = ActivityState()
    a = state.resolve(Identity(session_id="a"), T0)
    b = state.resolve(Identity(session_id="b"), T0)
    state.seen(b, T0 + 2 * S)  # no engagement: ranked by last_seen
    assert [v.id for v in state.sessions(T0, limit=1)] == ["b"]
    state.activity(a, "input", T0 + S)  # engaged: ahead of every session without
    assert [v.id for v in state.sessions(T0, limit=1)] == ["a"]
    state.activity(b, "prompt", T0 + 3 * S)
    assert [v.id for v in state.sessions(T0, limit=2)] == ["b", "a"]
    # Trusted only: b's prompt does not count; a's input does.
    assert [v.id for v in state.sessions(T0, limit=2, trusted_only=True)] == ["a", "b"]


def test_a_page_makes_its_views_a_slice_at_a_time() -> None:
    """Twice a slice of sessions and one: the page, from the recency index or of one host, is
    the one :meth:`ActivityState.sessions` gives, its views made :data:`VIEWS_SLICE` a slice
    (issue 15: 10,000 at once held the event loop ~55 ms)."""
    state = ActivityState()
    n = 2 * VIEWS_SLICE + 1
    for i in range(n):
        ents = state.resolve(Identity(session_id=f"s{i:04d}", host_id="h"), T0)
        state.activity(ents, "input", T0 - i * S)
    for host in (None, "h"):
        slices, page = slices_of(state.sessions_sliced(T0, host, n))
        assert slices == 3
        assert [v.id for v in page] == [f"s{i:04d}" for i in range(n)]
        assert page == state.sessions(T0, host, n)
