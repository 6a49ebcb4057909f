"""Reporter clock offsets: the estimate, its steps, and the correction applied at ingest (a fake
clock; the reporter's clocks are what its data points say)."""

from __future__ import annotations

import base64
import random
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from lastactive.collector._clocks import (
    REPORTERS_SLICE,
    STEP_NS,
    WINDOW_NS,
    WINDOW_SAMPLES,
    ReporterClock,
    ReporterClocks,
    place,
)
from lastactive.collector._ingest import Ingest
from lastactive.collector._paging import PageTokenError, reporters_page, sessions_page
from lastactive.collector._sliced import whole
from lastactive.collector._state import ActivityState, Identity, Kind
from lastactive.collector.policy import Rules, evaluate
from tests.helpers import S, kv, metrics_request, slices_of, sum_point

T0 = 1_800_000_000 * S
HOUR = 3600 * S


def test_the_estimate_is_the_least_delayed_sample() -> None:
    clocks = ReporterClocks(tolerance_ns=10 * S)
    key = ("svc", None, "h", None)
    for received, delay in ((T0, 2 * S), (T0 + 5 * S, S // 10), (T0 + 10 * S, 3 * S)):
        clock = clocks.observe(key, received - HOUR - delay, received)
    assert clock is not None and clock.offset == HOUR + S // 10
    assert clocks.correction(clock) == HOUR + S // 10
    assert clocks.newly_skewed == [clock]  # once, when it went beyond the tolerance


def test_a_clock_that_steps_back_restarts_the_window() -> None:
    """A clock an hour ahead, then set right by NTP: the new offset applies at once (an old
    estimate would make every new activity look an hour old)."""
    clocks = ReporterClocks(tolerance_ns=10 * S)
    key = ("svc", None, "h", None)
    clocks.observe(key, T0 + HOUR, T0)
    clock = clocks.observe(key, T0 + 5 * S, T0 + 5 * S)
    assert clock is not None and clock.offset == 0 and clocks.correction(clock) == 0


def test_small_offsets_are_tolerated_and_silent_reporters_forgotten() -> None:
    clocks = ReporterClocks(tolerance_ns=10 * S)
    clock = clocks.observe(("a",), T0 - 3 * S, T0)
    assert clock is not None and clock.offset == 3 * S and clocks.correction(clock) == 0
    assert clocks.skewed() == [] and clocks.newly_skewed == []
    assert clocks.observe(("b",), 0, T0) is None  # no stamp: nothing to learn
    clocks.purge(T0)  # the first purge sets when generations rotate
    clocks.purge(T0 + HOUR)
    assert len(clocks) == 1  # silent, but in the old generation until the next rotation
    clocks.purge(T0 + 2 * HOUR)
    assert clocks.reporters == [] and len(clocks) == 0
    while clocks.release(1):
        pass


def make() -> tuple[Ingest, list[int]]:
    now = [T0]
    return Ingest(ActivityState(max_skew_ns=10 * S, started_at=T0 - HOUR), lambda: now[0]), now


def export_last_input(ingest: Ingest, reporter_now: int, last_input: int) -> None:
    """One export of a reporter whose clock reads ``reporter_now``: the input gauge."""
    point = sum_point(0, reporter_now, 0, **{"lastactive.source": "input"})
    point.as_double = last_input / S
    ingest.metrics(metrics_request("s", gauges={"lastactive.source.last_time": [point]}))


def test_a_reporter_an_hour_behind_is_not_idle_while_its_user_types() -> None:
    """Issue 10 (1): under faketime -1h someone typing every second showed idle_seconds 3600."""
    ingest, now = make()
    rules = Rules(idle_after=60)
    for k in range(10):
        now[0] = T0 + k * S
        export_last_input(ingest, now[0] - HOUR, now[0] - HOUR - S // 2)  # typed 0.5 s ago
    v = ingest.state.get(Kind.SESSION, "s", now[0])
    assert v is not None and v.idle_seconds < 1 and v.clock_offset == HOUR
    assert evaluate(v, rules, now[0]).state == "active"


def test_a_reporter_an_hour_ahead_goes_idle() -> None:
    """Issue 10 (2): a gauge repeating one time an hour ahead was clamped to now at every
    export, so the stale value counted as fresh activity for as long as the reporter ran."""
    ingest, now = make()
    typed = T0 + HOUR  # the user typed at T0, on a clock an hour ahead
    for k in range(0, 600, 5):
        now[0] = T0 + k * S
        export_last_input(ingest, now[0] + HOUR, typed)  # repeats the same last time
    v = ingest.state.get(Kind.SESSION, "s", now[0])
    assert v is not None and v.last_active == T0 and v.clock_offset == -HOUR
    e = evaluate(v, Rules(idle_after=60), now[0])
    assert e.state == "idle" and v.idle_seconds >= 590
    (reporter,) = ingest.clocks.skewed()
    assert reporter.key == ("test", None, "host-a", "s")


def test_a_reporter_within_tolerance_keeps_its_exact_times() -> None:
    ingest, _ = make()
    export_last_input(ingest, T0 - 2 * S, T0 - 3 * S)
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and v.last_active == T0 - 3 * S and v.clock_offset == 2 * S


def test_log_records_and_holds_are_corrected_by_their_reporters_offset() -> None:
    """A one-shot reporter (a hook) an hour behind: its record's observed time is its now."""
    ingest, _ = make()
    behind = T0 - HOUR
    hold = {"lastactive.hold": "tool", "lastactive.hold.id": "Bash/1",
            "lastactive.hold.until": (behind + 60 * S) / S}  # fmt: skip
    records = [
        logs_pb2.LogRecord(event_name=name, attributes=kv(attrs), time_unix_nano=behind,
                           observed_time_unix_nano=behind)
        for name, attrs in (("lastactive.activity", {"lastactive.source": "prompt"}),
                            ("lastactive.hold", hold))
    ]  # fmt: skip
    ingest.logs(ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": kv({"session.id": "s", "service.name": "claude-code"})},
        scope_logs=[logs_pb2.ScopeLogs(log_records=records)],
    )]))  # fmt: skip
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and v.last_active == T0
    assert [(h.id, h.until) for h in v.held_by] == [("Bash/1", T0 + 60 * S)]


def test_skewed_reporters_are_kept_apart_and_forgotten_with_the_rest() -> None:
    clocks = ReporterClocks(tolerance_ns=10 * S)
    behind = clocks.observe(("behind",), T0 - HOUR, T0)
    clocks.observe(("fine",), T0, T0)
    assert clocks.skewed() == [behind]
    clocks.purge(T0)
    clocks.observe(("fine",), T0 + HOUR, T0 + HOUR)
    clocks.purge(T0 + HOUR)  # rotates: "behind" is in the old generation, still skewed
    assert clocks.skewed() == [behind] and len(clocks) == 2
    clocks.observe(("fine",), T0 + 2 * HOUR, T0 + 2 * HOUR)  # heard again: back in current
    clocks.purge(T0 + 2 * HOUR)  # silent for a whole generation: forgotten
    assert clocks.skewed() == [] and [c.key for c in clocks.reporters] == [("fine",)]


def test_a_reporter_whose_clock_came_back_is_no_longer_skewed() -> None:
    clocks = ReporterClocks(tolerance_ns=10 * S)
    clocks.observe(("r",), T0 - HOUR, T0)
    assert len(clocks.skewed()) == 1
    clocks.observe(("r",), T0 + HOUR, T0 + HOUR)  # NTP stepped it: a new window
    assert clocks.skewed() == []


def _reference_offsets(exports: list[tuple[int, int]]) -> list[int]:
    """The minimum-delay filter as the module docstring states it, on a deque of pairs: the
    smallest of the last WINDOW_SAMPLES samples within WINDOW_NS, a new window at a step."""
    samples: deque[tuple[int, int]] = deque(maxlen=WINDOW_SAMPLES)
    offset, out = 0, []
    for reported, received in exports:
        sample = received - reported
        while samples and samples[0][0] < received - WINDOW_NS:
            samples.popleft()
        if samples and sample > offset + STEP_NS:
            samples.clear()
        samples.append((received, sample))
        offset = min(s for _, s in samples)
        out.append(offset)
    return out


@given(
    st.lists(
        st.tuples(
            st.integers(0, 400 * S),  # time since the previous export (ns)
            st.integers(-3600 * S, 3600 * S),  # the reporter's offset then
            st.integers(0, 40 * S),  # the delay
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_estimate_is_the_minimum_delay_filter(steps: list[tuple[int, int, int]]) -> None:
    """Exports at any pace with any offsets, steps and delays: each estimate is the reference
    filter's (the samples kept as int64 pairs, not a deque of tuples)."""
    received, exports = T0, []
    for gap, offset, delay in steps:
        received += gap
        exports.append((received - offset - delay, received))
    clock = ReporterClock(("svc", "i", "h", None))
    assert [clock.observe(r, t) for r, t in exports] == _reference_offsets(exports)
    assert len(clock.samples) <= 2 * WINDOW_SAMPLES


def test_pages_of_reporters_come_largest_offset_first() -> None:
    """Offsets of either sign, ties of magnitude, unset key parts: every page from every token
    equals the sort by place, of all reporters or of those skewed; another list's token or a
    made-up one is refused."""
    rng = random.Random(7)
    clocks = ReporterClocks(10 * S)
    for i in range(60):
        key = (rng.choice(["svc", None]), f"i{i}", rng.choice(["h1", "h2", None]), None)
        offset = rng.choice([-1, 1]) * rng.choice([0, 5, 20, 3600]) * S
        clocks.observe(key, T0 - offset, T0)
    for skewed in (False, True):
        pool = [c for c in clocks.reporters if not skewed or clocks.correction(c)]
        want = [c.key for c in sorted(pool, key=place)]
        assert len(want) == 60 if not skewed else 0 < len(want) < 60  # some skewed, not all
        for limit in (1, 3, 7, 1000):
            got, token = [], ""
            while True:
                page, token = whole(reporters_page(clocks, limit, skewed, token))
                assert len(page) <= limit
                got += [c.key for c in page]
                if not token:
                    break
            assert got == want, (skewed, limit)
    state = ActivityState()
    for sid in ("a", "b"):
        state.activity(state.resolve(Identity(session_id=sid), T0), "input", T0)
    _, sessions_token = whole(sessions_page(state, T0, None, 1, False, ""))
    assert sessions_token
    for bad in (sessions_token, "bogus", base64.urlsafe_b64encode(b'[1, "a", "b", "c"]').decode()):
        with pytest.raises(PageTokenError):
            whole(reporters_page(clocks, 1, False, bad))


def test_a_page_of_reporters_looks_at_them_a_slice_at_a_time() -> None:
    """Twice a slice and one, offsets tied and in no order: a page looks at them
    :data:`REPORTERS_SLICE` a slice, and the pages still follow the sort by place."""
    n = 2 * REPORTERS_SLICE + 1
    clocks = ReporterClocks(10 * S)
    for i in range(n):
        clocks.observe(("svc", f"i{i}", None, None), T0 - (i * 7919 % n // 3) * S, T0)
    slices, first = slices_of(clocks.page_sliced(3, None, False))
    assert slices == 3
    want = sorted(clocks.reporters, key=place)
    assert first == want[:3]
    got, token = [], ""
    while True:
        page, token = whole(reporters_page(clocks, 1000, False, token))
        got += page
        if not token:
            break
    assert got == want
