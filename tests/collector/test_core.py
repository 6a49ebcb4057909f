"""The core the edges share, with a fake clock: decisions do not wait for the tick, which
catches up in slices; exports are applied in slices."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from lastactive.collector._core import Core
from lastactive.collector._ingest import INGEST_SLICE, Ingest
from lastactive.collector._state import ActivityState, Identity, Kind
from lastactive.collector._transitions import TICK_BUDGET, Transition, TransitionEngine
from lastactive.collector._watch import WatchHub
from lastactive.collector.policy import Policy, Rules, decide
from lastactive.conventions import Source
from tests.helpers import decisions_evaluations, metrics_request, sum_point, turns_while

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_decisions_do_not_wait_for_a_tick_behind_and_the_tick_catches_up_in_slices(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three slices' worth of sessions come due in the same second: the decisions answer at
    once, as over every entity, evaluating about ``2 * limit`` of them (issue 15: they waited
    for the tick, up to 300 ms at 1M sessions); the tick then evaluates them
    :data:`TICK_BUDGET` at a time with the loop free between, and the watchers get the
    transitions."""
    now = [T0]
    state = ActivityState()
    policy = Policy(Rules(idle_after=60, hibernate_after=3600))
    engine = TransitionEngine(state, policy, lambda: now[0])
    hub = WatchHub()
    core = Core(Ingest(state, lambda: now[0]), policy, engine, hub, lambda: now[0])
    n = 3 * TICK_BUDGET + 1
    for i in range(n):
        state.activity(state.resolve(Identity(session_id=f"s{i:04d}"), T0), Source.INPUT, T0)
    engine.tick()
    now[0] = T0 + 300 * S
    watcher = hub.subscribe()
    evaluated = decisions_evaluations(monkeypatch)
    out = asyncio.run(core.decisions(3600 * S, 5))
    assert len(evaluated) <= 2 * 5 + 2 and engine.behind
    assert out == decide(state.views(now[0]), policy, now[0], 3600 * S, 5) and out.truncated
    assert [d.view.id for d in out.due_soon] == [f"s{i:04d}" for i in range(5)]

    async def catch_up() -> tuple[int, list[Transition]]:
        turns, _ = await turns_while(core.catch_up())
        published = []
        while (item := await watcher.read(0)) is not None:
            assert isinstance(item, Transition)  # no resync, no marker
            published.append(item)
        return turns, published

    turns, published = asyncio.run(catch_up())
    assert turns >= 3  # the loop ran between the slices
    assert not engine.behind
    assert Counter((t.field, t.current) for t in published) == {("state", "idle"): n}
    assert engine.tick() == []


def test_an_export_is_applied_with_the_loop_free_between_its_slices() -> None:
    """A large export does not hold the loop (issue 15: queries wait behind it): the edges
    apply it :data:`INGEST_SLICE` items at a time, and all of it is applied."""
    state = ActivityState()
    policy = Policy()
    core = Core(
        Ingest(state, lambda: T0), policy, TransitionEngine(state, policy, lambda: T0),
        WatchHub(), lambda: T0,
    )  # fmt: skip
    n = 3 * INGEST_SLICE + 1
    points = [sum_point(0, T0, 0, **{"lastactive.source": "input"}) for _ in range(n)]
    for i, p in enumerate(points):
        p.as_double = T0 // S - n + i  # seconds since the epoch, the last one a second ago
    req = metrics_request("a", gauges={"lastactive.source.last_time": points})

    turns, out = asyncio.run(turns_while(core.apply(core.ingest.metrics_sliced(req))))
    assert turns >= 3  # the loop ran between the four slices
    assert (out.accepted, out.rejected) == (n, 0)
    v = state.get(Kind.SESSION, "a", T0)
    assert v is not None and v.sources["input"] == T0 - S
