"""Fuzz every input a client controls against the real servers (issue 11: no input poisons the
service). OTLP/JSON over HTTP, the same requests as protobuf over gRPC, the agent-events
webhook and raw junk: never a 5xx or UNKNOWN, and afterwards every query answers, a flush and a
restart work, and a session reported before is untouched. The policy loader: every bad file is a
``PolicyError``, and what loads evaluates without raising.

Bounded in time (a few hundred examples per input); ``benchmarks/fuzz.py`` runs longer.
"""

from __future__ import annotations

import json
import math
import os
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lastactive.collector import SqliteStore, Store
from lastactive.collector._state import Kind, view
from lastactive.collector.policy import PolicyError, decide, load_policy
from lastactive.collector.proto import query_pb2
from lastactive.collector.store import PostgresStore
from lastactive.conventions import (
    AGENT_EVENTS,
    ATTR_AGENT_TURN,
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_REASON,
    ATTR_HOLD_UNTIL,
    ATTR_NETWORK_IO_DIRECTION,
    ATTR_PROCESS_EXIT_CODE,
    ATTR_PROCESS_PID,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    EVENT_ACTIVITY,
    EVENT_HOLD,
    EVENT_PROCESS_EXIT,
    METRIC_IO,
    METRIC_SOURCE_LAST_TIME,
)
from tests.helpers import PROTO, InProcessCollector, last_input

EXAMPLES = int(os.environ.get("LASTACTIVE_FUZZ_EXAMPLES", "150"))
"""Examples per input; ``benchmarks/fuzz.py`` raises it for a long run."""
pytestmark = pytest.mark.timeout(300 + EXAMPLES)

SEED = "fuzz-seed-session"
JSON = {"Content-Type": "application/json"}
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# --- values a client can send ---------------------------------------------------------------

BIG = [0, -1, 1, 255, 2**31 - 1, 2**31, 2**32, 2**53 + 1, 2**63 - 1, 2**63, 2**64 - 1, 10**30]
ints = st.sampled_from([*BIG, -(2**63), -(2**31) - 1]) | st.integers()
floats = st.sampled_from([0.0, -0.0, 1e300, -1e300, 1e18, 9.3e9, 5e-324, 1.7e9]) | st.floats()
texts = st.sampled_from(
    ["", "/", "a/b", "../../etc/passwd", "--help", "%2F", "\x00", "x" * 3000, "\ud800", "é"]
) | st.text(max_size=20)
SESSIONS = ["fz-1", "fz/2", "fz 3", "fz%4", "..", "-fz", "\U0001f600"]


def any_value(depth: int = 2) -> st.SearchStrategy[dict[str, Any]]:
    leaf = st.one_of(
        texts.map(lambda s: {"stringValue": s}),
        ints.map(lambda i: {"intValue": i}),
        ints.map(lambda i: {"intValue": str(i)}),
        floats.map(lambda f: {"doubleValue": f}),
        st.booleans().map(lambda b: {"boolValue": b}),
        st.just({}),
    )
    if depth == 0:
        return leaf
    inner = any_value(depth - 1)
    return leaf | st.lists(inner, max_size=3).map(lambda vs: {"arrayValue": {"values": vs}})


KEYS = [
    ATTR_SESSION_ID, "host.id", "gen_ai.agent.name", ATTR_SOURCE, ATTR_PROCESS_EXIT_CODE,
    ATTR_PROCESS_PID, ATTR_HOLD, ATTR_HOLD_ID, ATTR_HOLD_UNTIL, ATTR_HOLD_REASON,
    ATTR_AGENT_TURN, ATTR_NETWORK_IO_DIRECTION, "lastactive.task", "lastactive.result",
]  # fmt: skip
GOOD = {
    ATTR_SOURCE: ["input", "output", "exit", "presence", "bogus"],
    ATTR_HOLD: ["lease", "foreground", "client", "tool", "x"],
    ATTR_AGENT_TURN: ["working", "waiting", "x"],
    ATTR_NETWORK_IO_DIRECTION: ["receive", "transmit"],
    ATTR_SESSION_ID: SESSIONS,
}
attribute = st.one_of(
    st.builds(lambda k, v: {"key": k, "value": v}, st.sampled_from(KEYS) | texts, any_value()),
    st.sampled_from([(k, v) for k, vs in GOOD.items() for v in vs]).map(
        lambda kv: {"key": kv[0], "value": {"stringValue": kv[1]}}
    ),
)


def _attr(key: str, value: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return value.map(lambda v: {"key": key, "value": v})


def _text(*values: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.sampled_from(values).map(lambda v: {"stringValue": v})


number = ints.map(lambda i: {"intValue": i}) | floats.map(lambda f: {"doubleValue": f})
# Well-formed but for one value: what each of our conventions reads, with a nasty number.
SHAPED = {
    "io": [_attr(ATTR_NETWORK_IO_DIRECTION, _text("receive", "transmit"))],
    "last_time": [_attr(ATTR_SOURCE, _text("input", "output"))],
    EVENT_PROCESS_EXIT: [_attr(ATTR_PROCESS_EXIT_CODE, number), _attr(ATTR_PROCESS_PID, number)],
    EVENT_HOLD: [_attr(ATTR_HOLD, _text("lease", "tool")), _attr(ATTR_HOLD_ID, _text("h/1")),
                 _attr(ATTR_HOLD_UNTIL, number), _attr(ATTR_HOLD_REASON, any_value())],
    EVENT_ACTIVITY: [_attr(ATTR_SOURCE, _text("input")), _attr(ATTR_PROCESS_PID, number)],
}  # fmt: skip
attributes = st.lists(attribute, max_size=6) | st.sampled_from(list(SHAPED)).flatmap(
    lambda shape: st.tuples(*SHAPED[shape]).map(list)
)
nanos = (
    st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1])
    | st.integers(0, 2**64 - 1)
    | (st.integers(-(10**12), 10**12).map(lambda d: time.time_ns() + d * 1000))
)
resource = st.builds(
    lambda attrs, sid: {"attributes": [*attrs, {"key": ATTR_SESSION_ID,
                                                "value": {"stringValue": sid}}]},
    attributes, st.sampled_from(SESSIONS),
)  # fmt: skip
point = st.fixed_dictionaries(
    {"attributes": attributes, "timeUnixNano": nanos, "startTimeUnixNano": nanos},
    optional={"asInt": ints, "asDouble": floats, "flags": st.integers(0, 3)},
)
value = ints.map(lambda i: {"asInt": i}) | floats.map(lambda f: {"asDouble": f})
now_ish = st.integers(-(10**6), 10**6).map(lambda d: time.time_ns() + d * 1000)


def shaped_points(shape: str) -> st.SearchStrategy[list[dict[str, Any]]]:
    """One to three points of one stream of ``shape`` (a counter's rise, reset or overflow),
    its start recent so that a first point counts."""
    return st.builds(
        lambda attrs, values, t: [
            {"attributes": attrs, "startTimeUnixNano": t, "timeUnixNano": t + i + 1, **v}
            for i, v in enumerate(values)
        ],
        st.tuples(*SHAPED[shape]).map(list), st.lists(value, min_size=1, max_size=3), now_ish,
    )  # fmt: skip


metric = st.one_of(
    st.builds(
        lambda name, kind, points, temporality: {
            "name": name,
            kind: {"dataPoints": points, "aggregationTemporality": temporality,
                   "isMonotonic": True},
        },
        st.sampled_from([METRIC_IO, METRIC_SOURCE_LAST_TIME, "other"]) | texts,
        st.sampled_from(["sum", "gauge"]),
        st.lists(point, max_size=4),
        st.sampled_from([0, 1, 2, 3]),
    ),
    st.builds(
        lambda points, temporality: {"name": METRIC_IO, "sum": {
            "dataPoints": points, "aggregationTemporality": temporality, "isMonotonic": True}},
        shaped_points("io"), st.sampled_from([1, 2]),
    ),
    shaped_points("last_time").map(
        lambda points: {"name": METRIC_SOURCE_LAST_TIME, "gauge": {"dataPoints": points}}
    ),
)  # fmt: skip
metrics_body = st.builds(
    lambda rms: {"resourceMetrics": rms},
    st.lists(st.builds(lambda r, ms: {"resource": r, "scopeMetrics": [{"metrics": ms}]},
                       resource, st.lists(metric, max_size=3)), max_size=2),
)  # fmt: skip
EVENTS = [EVENT_ACTIVITY, EVENT_HOLD, EVENT_PROCESS_EXIT, *AGENT_EVENTS]
record = st.fixed_dictionaries(
    {
        "eventName": st.sampled_from(EVENTS) | texts,
        "attributes": attributes,
        "timeUnixNano": nanos,
        "observedTimeUnixNano": nanos,
    }
) | st.sampled_from([EVENT_PROCESS_EXIT, EVENT_HOLD, EVENT_ACTIVITY]).flatmap(
    lambda name: st.builds(
        lambda attrs, t: {"eventName": name, "attributes": attrs, "timeUnixNano": t},
        st.tuples(*SHAPED[name]).map(list), now_ish,
    )
)  # fmt: skip
logs_body = st.builds(
    lambda rls: {"resourceLogs": rls},
    st.lists(st.builds(lambda r, lrs: {"resource": r, "scopeLogs": [{"logRecords": lrs}]},
                       resource, st.lists(record, max_size=4)), max_size=2),
)  # fmt: skip
span = st.builds(
    lambda attrs, start, end, events: {
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
        "name": "s", "attributes": attrs, "startTimeUnixNano": start, "endTimeUnixNano": end,
        "events": events,
    },
    attributes, nanos, nanos,
    st.lists(st.builds(lambda n, a, t: {"name": n, "attributes": a, "timeUnixNano": t},
                       st.sampled_from(EVENTS), attributes, nanos), max_size=3),
)  # fmt: skip
traces_body = st.builds(
    lambda rss: {"resourceSpans": rss},
    st.lists(st.builds(lambda r, ss: {"resource": r, "scopeSpans": [{"spans": ss}]},
                       resource, st.lists(span, max_size=3)), max_size=2),
)  # fmt: skip
SIGNALS = [
    ("metrics", metrics_body, ExportMetricsServiceRequest,
     "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
    ("logs", logs_body, ExportLogsServiceRequest,
     "/opentelemetry.proto.collector.logs.v1.LogsService/Export"),
    ("traces", traces_body, ExportTraceServiceRequest,
     "/opentelemetry.proto.collector.trace.v1.TraceService/Export"),
]  # fmt: skip
JUNK = [
    b"", b"{", b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 50_000, b"\xff\xfe", b"null",
    b'{"resourceMetrics": 1e999}', b'{"resourceLogs": [{"resource": {"attributes": ' + b"[" * 5000,
]  # fmt: skip


# --- the collector under fuzz -----------------------------------------------------------------


Fuzzed = tuple[InProcessCollector, Callable[[], Store]]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def fuzzed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Fuzzed]:
    """A collector on each store, and how to open that store again (for the restart)."""
    reopen: Callable[[], Store]
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres").create_database("fuzz")
        reopen = lambda: PostgresStore(url)  # noqa: E731
    else:
        db = tmp_path_factory.mktemp("fuzz") / "state.db"
        reopen = lambda: SqliteStore(db)  # noqa: E731
    c = InProcessCollector(reopen(), flush_interval=0.05).start()
    last_input(c, SEED, 30)
    yield c, reopen
    c.stop()


def _seed(c: InProcessCollector) -> dict[str, Any]:
    s = c.session(SEED)
    assert s is not None
    # (not its state: idle follows from the passage of time during a long run)
    return {k: s[k] for k in ("last_active", "first_seen", "input_bytes", "sources")}


def _dumps(body: Any) -> bytes:
    # allow_nan: a client may send NaN/Infinity literals; ensure_ascii keeps lone surrogates
    # as \\u escapes, as a client's encoder would.
    return json.dumps(body, allow_nan=True, ensure_ascii=True).encode()


def _queries_answer(c: InProcessCollector) -> None:
    for path in ("/v1/sessions", "/v1/sessions?limit=3", "/v1/decisions", "/metrics"):
        status = c.get(path)[0] if path != "/metrics" else _metrics(c)
        assert status == 200, path
    channel, stub = c.grpc_stub()
    with channel:
        stub.ListSessions(query_pb2.ListSessionsRequest(), timeout=10)
        stub.Decisions(query_pb2.DecisionsRequest(), timeout=10)
        for sid in SESSIONS:
            try:
                stub.GetSession(query_pb2.GetRequest(id=sid), timeout=10)
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
            status, _ = c.get("/v1/sessions/" + urllib.parse.quote(sid, safe=""))
            assert status in (200, 404), sid


def _metrics(c: InProcessCollector) -> int:
    import urllib.request

    with urllib.request.urlopen(c.http + "/metrics", timeout=10) as r:
        return int(r.status)


@pytest.mark.parametrize(("name", "strategy", "message", "method"), SIGNALS,
                         ids=[s[0] for s in SIGNALS])  # fmt: skip
def test_otlp_never_fails_the_service(
    fuzzed: Fuzzed,
    name: str,
    strategy: st.SearchStrategy[dict[str, Any]],
    message: type[Any],
    method: str,
) -> None:
    c, _ = fuzzed
    before = _seed(c)
    channel = grpc.insecure_channel(c.grpc_target)
    export = channel.unary_unary(method)

    @FUZZ
    @given(body=strategy)
    def one(body: dict[str, Any]) -> None:
        status, reply, _ = c.post(f"/v1/{name}", _dumps(body), JSON)
        assert status in (200, 400), (status, reply[:300])
        try:
            proto = json_format.ParseDict(body, message(), ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError):
            return
        status, reply, _ = c.post(f"/v1/{name}", proto.SerializeToString(), PROTO)
        assert status in (200, 400), (status, reply[:300])
        try:
            export(proto.SerializeToString(), timeout=10)
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.INVALID_ARGUMENT, exc

    with channel:
        one()
    for junk in JUNK:  # (another signal's field is an unknown field: ignored, 200)
        status, _, _ = c.post(f"/v1/{name}", junk, JSON)
        assert status in (200, 400), junk[:40]
    _queries_answer(c)
    assert _seed(c) == before


webhook = st.fixed_dictionaries(
    {},
    optional={
        "action": st.sampled_from(["spawn", "progress", "complete", "error", "x"]),
        "sessionKey": st.sampled_from(SESSIONS) | texts,
        "agentName": texts,
        "task": texts,
        "result": texts | st.just("r" * 70_000),
        "hostId": texts,
        "turn": st.sampled_from(["working", "waiting", "x"]) | texts,
        "extra": any_value(),
    },
)


def test_webhook_never_fails_the_service(fuzzed: Fuzzed) -> None:
    c, _ = fuzzed
    before = _seed(c)

    @FUZZ
    @given(body=webhook | ints | texts)
    def one(body: Any) -> None:
        status, reply, _ = c.post("/v1/agent-events", _dumps(body), JSON)
        assert status in (200, 400), (status, reply[:300])
        if status == 200:  # any id it accepted can be fetched back
            sid = urllib.parse.quote(body["sessionKey"], safe="")
            got, session = c.get(f"/v1/sessions/{sid}")
            assert got == 200 and session["id"] == body["sessionKey"]

    one()
    for junk in JUNK:
        assert c.post("/v1/agent-events", junk, JSON)[0] == 400, junk[:40]
    _queries_answer(c)
    assert _seed(c) == before


def _sessions(c: InProcessCollector) -> dict[str, tuple[Any, ...]]:
    status, body = c.get("/v1/sessions")
    assert status == 200
    keys = ("last_active", "first_seen", "input_bytes", "output_bytes", "sources", "process")
    return {
        s["id"]: tuple(json.dumps(s[k], sort_keys=True) for k in keys) for s in body["sessions"]
    }


def test_state_survives_a_restart_after_the_fuzz(fuzzed: Fuzzed) -> None:
    """Whatever the fuzz left behind flushes, loads and answers the same after a restart."""
    c, reopen = fuzzed
    before = _sessions(c)
    assert SEED in before and len(before) > 1
    c.stop()
    again = InProcessCollector(reopen()).start()
    try:
        _queries_answer(again)
        assert _sessions(again) == before
    finally:
        again.stop()


# --- the policy loader ------------------------------------------------------------------------

toml_value = st.one_of(
    floats.map(lambda f: repr(f) if math.isfinite(f) else ("inf" if f > 0 else "-inf")),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0", "-5", "true", '"x"', "[1, 2]", "{}"]),
    ints.map(str),
)
FIELDS = ["idle_after", "hibernate_after", "max_age", "after_close", "never_used",
          "stuck_after", "lost_after", "tool_call_max", "runaway_bytes_per_second", "count",
          "exempt_leases", "bogus"]  # fmt: skip
policy_text = st.one_of(
    st.lists(st.tuples(st.sampled_from(FIELDS), toml_value), max_size=4).map(
        lambda pairs: "[defaults]\n" + "".join(f"{k} = {v}\n" for k, v in pairs)
    ),
    st.lists(st.tuples(st.sampled_from(FIELDS), toml_value), max_size=3).map(
        lambda pairs: (
            '[[overrides]]\nmatch = { session_prefix = "a" }\n'
            + "".join(f"{k} = {v}\n" for k, v in pairs)
        )
    ),
    st.text(max_size=200),
)
policy_bytes = (
    policy_text.map(str.encode)
    | st.binary(max_size=200)
    | st.sampled_from([b"\xff\xfe[defaults]", b"a = " + b"[" * 10_000, b"a = " + b"{x = " * 5_000])
)


@settings(max_examples=2 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=policy_bytes)
def test_policy_loader_reports_every_bad_file(raw: bytes, tmp_path_factory: Any) -> None:
    path = tmp_path_factory.mktemp("policy") / "policy.toml"
    path.write_bytes(raw)
    try:
        policy = load_policy(path)
    except PolicyError as exc:
        assert str(path) in str(exc)
        return
    from lastactive.collector._state import Entity

    now = time.time_ns()
    entity = Entity(Kind.SESSION, "a1", first_seen=now - 10**15, last_seen=now)
    entity.set_source("input", now - 10**12)
    v = view(entity, now)
    policy.evaluate(v, now)
    decide([v], policy, now, 10**12)
