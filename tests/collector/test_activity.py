"""The one home of activity semantics: class, trust, last counted, idle since, progress, stuck."""

from __future__ import annotations

from lastactive.collector._activity import (
    CLASS_OF,
    TRUSTED,
    idle_since,
    last_counted,
    latest,
    latest_by_class,
    progress,
    stuck_since,
)
from lastactive.conventions import IDLE_CLASSES, SOURCES, ActivityClass

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_class_and_trust_come_from_the_source_table() -> None:
    assert {src: CLASS_OF[src] for src in CLASS_OF} == {
        str(s): i.activity_class for s, i in SOURCES.items()
    }
    assert {str(s) for s, i in SOURCES.items() if i.trusted} == TRUSTED
    assert "input" in TRUSTED and "prompt" not in TRUSTED  # observed vs self-reported


def test_latest_counts_only_the_classes_asked_and_trust_when_asked() -> None:
    sources = {
        "input": T0,
        "prompt": T0 + 5 * S,
        "heartbeat": T0 + 9 * S,
        "nonsense": T0 + 99,
    }.items()
    assert latest(sources) == ("prompt", T0 + 5 * S)  # liveness never ends idleness
    assert latest(sources, trusted_only=True) == ("input", T0)  # prompt is self-reported
    assert latest(sources, {ActivityClass.LIVENESS}) == ("heartbeat", T0 + 9 * S)
    assert latest((), IDLE_CLASSES) == (None, None)


def test_the_hibernate_record_is_lifecycle_but_never_counted_by_the_policy() -> None:
    sources = {"output": T0, "hibernate": T0 + 60 * S}.items()
    assert latest(sources)[0] == "hibernate"  # the "why" shows it
    assert last_counted(sources, IDLE_CLASSES, count_untrusted=True) == T0
    assert last_counted([("prompt", T0)], IDLE_CLASSES, count_untrusted=False) is None
    assert idle_since(T0 - S, None) == T0 - S and idle_since(T0 - S, T0) == T0


def test_latest_by_class_in_one_pass() -> None:
    got = latest_by_class(
        [("input", T0), ("prompt", T0 + S), ("output", T0 + 2 * S), ("x", T0 + 9)]
    )
    assert got == {ActivityClass.ENGAGEMENT: T0 + S, ActivityClass.WORK: T0 + 2 * S}


def test_progress_and_stuck_since_are_for_agents_that_made_progress() -> None:
    assert progress({"agent": T0, "start": T0 - S, "input": T0 + S}) == T0
    assert progress({"input": T0}) == 0
    assert stuck_since({"agent": T0}, "codey", 30 * S) == T0 + 30 * S
    assert stuck_since({"agent": T0}, None, 30 * S) is None  # not an agent's session
    assert stuck_since({"input": T0}, "codey", 30 * S) is None  # never made progress
