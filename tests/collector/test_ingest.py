"""OTLP requests applied to state with a fake clock: what each signal means, and partial success
for what breaks the conventions while the rest of the request is kept."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from lastactive.collector._ingest import INGEST_SLICE, Ingest
from lastactive.collector._sliced import whole
from lastactive.collector._state import ActivityState, Kind
from tests.helpers import S, kv, metrics_request, sum_point

T0 = 1_800_000_000 * S


def make() -> tuple[Ingest, list[int]]:
    now = [T0]
    return Ingest(ActivityState(started_at=T0 - 60 * S), lambda: now[0]), now


def logs(session_id: str, *records: tuple[str, dict[str, object], int]) -> ExportLogsServiceRequest:
    return ExportLogsServiceRequest(
        resource_logs=[
            logs_pb2.ResourceLogs(
                resource={"attributes": kv({"session.id": session_id, "host.id": "h"})},
                scope_logs=[
                    logs_pb2.ScopeLogs(
                        log_records=[
                            logs_pb2.LogRecord(event_name=n, attributes=kv(a), time_unix_nano=t)
                            for n, a, t in records
                        ]
                    )
                ],
            )
        ]
    )


def test_gauge_sets_the_source_time_and_a_bad_source_is_rejected_alone() -> None:
    ingest, _ = make()
    req = metrics_request("s", gauges={"lastactive.source.last_time": [
        sum_point(0, T0, 0, **{"lastactive.source": "input"}),
        sum_point(0, T0, 0, **{"lastactive.source": "bogus"}),
    ]})  # fmt: skip
    for p in req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points:
        p.as_double = (T0 - 5 * S) / S
    out = ingest.metrics(req)
    assert (out.accepted, out.rejected) == (1, 1) and "bogus" in out.error_message
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and v.last_active == T0 - 5 * S and v.host_id == "host-a"


def test_a_cumulative_counter_counts_rises_only() -> None:
    ingest, now = make()

    def io(value: int, t: int) -> None:
        point = sum_point(value, t, T0 - 90 * S, **{"network.io.direction": "transmit"})
        ingest.metrics(metrics_request("s", sums={"lastactive.session.io": [point]}))

    io(100, T0)  # began before the collector started (T0 - 60 s): a baseline
    io(150, T0 + S)
    io(150, T0 + S)  # replayed
    now[0] = T0 + 2 * S
    io(170, T0 + 2 * S)
    v = ingest.state.get(Kind.SESSION, "s", T0 + 2 * S)
    assert v is not None and v.output_bytes == 70
    assert v.sources["output"] == T0 + 2 * S  # issue 10 (6): bytes out are output (work)


def test_bytes_alone_are_activity_of_their_direction() -> None:
    """Issue 10 (6): an app reporting only the io counter is not idle while bytes move."""
    ingest, now = make()

    def io(direction: str, value: int, t: int) -> None:
        point = sum_point(value, t, T0 - 10 * S, **{"network.io.direction": direction})
        ingest.metrics(metrics_request("s", sums={"lastactive.session.io": [point]}))

    io("transmit", 10, T0)  # started after the collector: all of it counts
    io("receive", 0, T0)
    io("receive", 0, T0 + S)  # arrived, nothing moved: not activity
    v = ingest.state.get(Kind.SESSION, "s", T0 + S)
    assert v is not None and (v.last_source, v.last_active) == ("output", None)
    now[0] = T0 + 2 * S
    io("receive", 3, T0 + 2 * S)
    v = ingest.state.get(Kind.SESSION, "s", T0 + 2 * S)
    assert v is not None and (v.last_source, v.last_active) == ("input", T0 + 2 * S)


def test_exit_event_ends_the_process_and_releases_holds() -> None:
    ingest, _ = make()
    ingest.logs(logs("s",
        ("lastactive.hold", {"lastactive.hold": "lease", "lastactive.hold.id": "L",
                             "lastactive.hold.until": 0.0}, T0),
        ("lastactive.activity", {"lastactive.source": "start", "process.pid": 42}, T0),
    ))  # fmt: skip
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and [h.id for h in v.held_by] == ["L"] and v.pid == 42
    out = ingest.logs(logs("s", ("lastactive.process.exit", {"process.exit.code": 3}, T0 + S)))
    assert out.accepted == 1
    v = ingest.state.get(Kind.SESSION, "s", T0 + 2 * S)
    assert v is not None and v.held_by == [] and (v.exit_code, v.status) == (3, "error")


def test_an_integral_double_is_the_integer_it_carries() -> None:
    """Issue 14: the OpenTelemetry Collector's JSON turns 3 into 3.0; 3.5 stays wrong."""
    ingest, _ = make()
    out = ingest.logs(logs("s",
        ("lastactive.process.exit", {"process.exit.code": 3.0, "process.pid": 42.0}, T0),
        ("lastactive.process.exit", {"process.exit.code": 3.5}, T0),
    ))  # fmt: skip
    assert (out.accepted, out.rejected) == (1, 1) and "3.5" in out.error_message
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and (v.exit_code, v.pid) == (3, 42)
    assert isinstance(v.exit_code, int)


def test_a_rejected_record_creates_nothing() -> None:
    """Issue 14: a record rejected for its values leaves no phantom session, agent or host,
    whichever signal carries it."""
    ingest, _ = make()
    out = ingest.logs(logs("phantom-log",
        ("lastactive.process.exit", {"process.exit.code": "three"}, T0),
        ("lastactive.activity", {"lastactive.source": "bogus"}, T0),
        ("lastactive.hold", {"lastactive.hold": "lease"}, T0),
    ))  # fmt: skip
    assert (out.accepted, out.rejected) == (0, 3)
    gauge = sum_point(0, T0, 0, **{"lastactive.source": "bogus"})
    gauge.as_double = T0 / S
    counter = sum_point(5, T0, T0 - S, **{"network.io.direction": "sideways"})
    out = ingest.metrics(
        metrics_request(
            "phantom-metric",
            gauges={"lastactive.source.last_time": [gauge]},
            sums={"lastactive.session.io": [counter]},
        )
    )
    assert (out.accepted, out.rejected) == (0, 2)
    req = ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource={"attributes": kv({"session.id": "phantom-span"})},
        scope_spans=[trace_pb2.ScopeSpans(spans=[
            trace_pb2.Span(name="a", end_time_unix_nano=T0,
                           attributes=kv({"lastactive.source": "bogus"})),
            trace_pb2.Span(name="b", end_time_unix_nano=T0, events=[trace_pb2.Span.Event(
                name="lastactive.process.exit", time_unix_nano=T0,
                attributes=kv({"process.exit.code": 1.5}))]),
        ])],
    )])  # fmt: skip
    out = ingest.traces(req)
    assert (out.accepted, out.rejected) == (0, 2)
    assert ingest.state.count() == 0


def test_a_hold_without_an_id_is_rejected_and_others_kept() -> None:
    ingest, _ = make()
    out = ingest.logs(logs("s",
        ("lastactive.hold", {"lastactive.hold": "lease", "lastactive.hold.until": 0.0}, T0),
        ("lastactive.activity", {"lastactive.source": "prompt"}, T0),
    ))  # fmt: skip
    assert (out.accepted, out.rejected) == (1, 1) and "lastactive.hold.id" in out.error_message


def test_spans_with_a_source_are_that_activity_and_others_are_liveness() -> None:
    ingest, _ = make()
    req = ExportTraceServiceRequest(resource_spans=[trace_pb2.ResourceSpans(
        resource={"attributes": kv({"session.id": "s"})},
        scope_spans=[trace_pb2.ScopeSpans(spans=[
            trace_pb2.Span(name="work", end_time_unix_nano=T0 - S,
                           attributes=kv({"lastactive.source": "agent"})),
            trace_pb2.Span(name="other", end_time_unix_nano=T0),
        ])],
    )])  # fmt: skip
    assert ingest.traces(req).accepted == 2
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and v.sources == {"agent": T0 - S, "telemetry": T0}
    assert v.last_source == "agent"  # liveness is kept, never the why


def test_telemetry_about_nothing_we_track_is_skipped() -> None:
    ingest, _ = make()
    req = ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(time_unix_nano=T0)])]
    )])  # fmt: skip
    out = ingest.logs(req)
    assert (out.accepted, out.rejected) == (0, 0) and not ingest.state.count()


def test_the_webhook_is_seed_004s_lifecycle_at_the_receive_time() -> None:
    ingest, now = make()
    ingest.agent_webhook("s", "codey", "lastactive.agent.spawn", "fix it", None)
    now[0] = T0 + S
    ingest.agent_webhook("s", "codey", "lastactive.agent.complete", None, "done")
    v = ingest.state.get(Kind.SESSION, "s", T0 + S)
    assert v is not None and (v.status, v.task, v.result) == ("completed", "fix it", "done")
    assert v.agent_id == "codey" and v.sources["exit"] == T0 + S


def test_counter_streams_share_their_parts_and_outlive_an_evicted_entity() -> None:
    ingest, now = make()
    state = ingest.state

    def io(sid: str, direction: str, value: int, t: int) -> None:
        point = sum_point(value, t, T0 - 90 * S, **{"network.io.direction": direction})
        ingest.metrics(metrics_request(sid, sums={"lastactive.session.io": [point]}))

    for sid in ("a", "b"):
        for direction in ("receive", "transmit"):
            io(sid, direction, 100, T0)
    keys = list(state._streams.current)
    assert len(keys) == 4
    host = state.entities[Kind.HOST]["host-a"]
    for key in keys:
        session = state.entities[Kind.SESSION][key[4]]
        # The request's strings are not kept: the entities' own ids, shared names and
        # attributes (one tuple for every stream of a direction).
        assert key[4] is session.id and key[6] is host.id and session.host_id is host.id
        assert key[1] is keys[0][1] and key[2] is keys[0][2]
        assert key[3] is next(k for k in keys if k[3] == key[3])[3]
    assert {len(r.key) for r in state.take_dirty_streams()} == {32}
    assert not any(st.text for st in state._streams.current.values())  # made at each flush
    # A stream outlives its entity's eviction (a replica forgets a session it does not own
    # after a minute): the next point counts the bytes since the last one, not a baseline.
    state.take_dirty(), state.take_touched()  # committed and evaluated
    ingest.clocks = type(ingest.clocks)(ingest.clocks.tolerance_ns)  # and the clock estimate
    session = state.entities[Kind.SESSION]["a"]
    assert state.evict(session, T0) and "a" not in state.entities[Kind.SESSION]
    now[0] = T0 + S
    io("a", "transmit", 130, T0 + S)
    v = state.get(Kind.SESSION, "a", T0 + S)
    assert v is not None and v.output_bytes == 30


def test_an_export_is_applied_in_slices_and_resolved_anew_after_each() -> None:
    """Between slices the loop runs: an entity the request resolved may be evicted or purged
    meanwhile, so the rest of the request resolves it again instead of writing to the
    forgotten one."""
    ingest, _ = make()
    state = ingest.state
    n = 2 * INGEST_SLICE
    source = {"lastactive.source": "input"}
    req = logs("a", *(("lastactive.activity", source, T0 - (n - i) * S) for i in range(n)))
    slices = ingest.logs_sliced(req)
    next(slices)  # the first slice is applied, the rest waits
    v = state.get(Kind.SESSION, "a", T0)
    assert v is not None and v.sources["input"] == T0 - (n - INGEST_SLICE + 1) * S
    state.take_dirty(), state.take_touched()  # committed and evaluated
    assert state.evict(state.entities[Kind.SESSION]["a"], T0)
    out = whole(slices)  # the second slice
    assert (out.accepted, out.rejected) == (n, 0)
    v = state.get(Kind.SESSION, "a", T0)
    assert v is not None and v.sources["input"] == T0 - S
    assert sum(1 for _ in ingest.logs_sliced(req)) == 1  # two slices: one turn between them
