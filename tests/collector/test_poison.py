"""Each poison issue 11 found, one test each: the input gets a clear rejection (partial success
naming the value, or 400 / a ``PolicyError``), every query keeps answering, other sessions are
untouched, and what was accepted flushes and survives a restart."""

from __future__ import annotations

import json
import sqlite3
import time
import urllib.parse
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceResponse,
)

from lastactive.client import logs_request
from lastactive.collector import SqliteStore
from lastactive.collector.policy import PolicyError, load_policy
from lastactive.collector.proto import query_pb2
from lastactive.conventions import (
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_UNTIL,
    ATTR_PROCESS_EXIT_CODE,
    ATTR_SESSION_ID,
    EVENT_HOLD,
    EVENT_PROCESS_EXIT,
)
from tests.helpers import PROTO, InProcessCollector, last_input, metrics_request, sum_point

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def served(tmp_path: Path) -> Any:
    db = tmp_path / "state.db"
    c = InProcessCollector(SqliteStore(db), flush_interval=0.05).start()
    last_input(c, "bystander", 10)
    yield c, db
    c.stop()


def _answers(c: InProcessCollector) -> dict[str, Any]:
    """Every query answers; the bystander's view."""
    assert c.get("/v1/sessions")[0] == 200 and c.get("/v1/decisions")[0] == 200
    channel, stub = c.grpc_stub()
    with channel:
        listed = stub.ListSessions(query_pb2.ListSessionsRequest(), timeout=10)
        assert "bystander" in {s.id for s in listed.sessions}
        stub.GetSession(query_pb2.GetRequest(id="bystander"), timeout=10)
    s = c.session("bystander")
    assert s is not None
    return {k: s[k] for k in ("last_active", "first_seen", "last_seen", "sources", "state")}


def _restarted(db: Path, c: InProcessCollector) -> InProcessCollector:
    c.stop()
    return InProcessCollector(SqliteStore(db)).start()


def _event(c: InProcessCollector, name: str, attrs: dict[str, Any]) -> ExportLogsServiceResponse:
    body = logs_request({"service.name": "poison"}, [(name, attrs, time.time_ns())])
    status, reply, _ = c.post("/v1/logs", json.dumps(body).encode(), JSON)
    assert status == 200, reply
    return json_format.Parse(reply, ExportLogsServiceResponse())


@pytest.mark.parametrize("values", [[1e300], [2**63 - 1, 2**63 - 1]], ids=["1e300", "2x int64max"])
def test_a_huge_counter_is_rejected_or_saturates_and_never_breaks_a_flush(
    served: Any, values: list[float]
) -> None:
    c, db = served
    before = _answers(c)
    rejected = 0
    start = time.time_ns()  # after the collector started: a first point counts whole
    for i, v in enumerate(values):
        point = sum_point(0, start + i + 1, start, **{"network.io.direction": "receive"})
        if isinstance(v, float):
            point.as_double = v
        else:
            point.as_int = v
        streams = {"lastactive.session.io": [point]}
        req = metrics_request(f"huge-{i}" if i else "huge", sums=streams)
        req.resource_metrics[0].resource.attributes[0].value.string_value = "huge"
        status, reply, _ = c.post("/v1/metrics", req.SerializeToString(), PROTO)
        assert status == 200
        partial = ExportMetricsServiceResponse.FromString(reply).partial_success
        rejected += partial.rejected_data_points
        if partial.rejected_data_points:
            assert "counter value must be in [0, 9223372036854775807]" in partial.error_message
    assert rejected == (1 if values == [1e300] else 0)
    assert _answers(c) == before
    again = _restarted(db, c)
    try:
        assert _answers(again)["last_active"] == before["last_active"]
        huge = again.session("huge")
        if values != [1e300]:  # two streams of int64 max: the total saturates, no overflow
            assert huge is not None and huge["input_bytes"] == 2**63 - 1
    finally:
        again.stop()


@pytest.mark.parametrize(
    ("name", "attrs", "message"),
    [
        (EVENT_HOLD, {ATTR_HOLD: "lease", ATTR_HOLD_ID: "x", ATTR_HOLD_UNTIL: 1e18},
         "lastactive.hold.until must be in [0, 9223372036]"),
        (EVENT_PROCESS_EXIT, {ATTR_PROCESS_EXIT_CODE: 2**31},
         "process.exit.code=2147483648 is out"),
        (EVENT_PROCESS_EXIT, {ATTR_PROCESS_EXIT_CODE: 1, ATTR_SESSION_ID: "x" * 600},
         "a session id of 600 characters is longer than 512"),
        (EVENT_PROCESS_EXIT, {ATTR_PROCESS_EXIT_CODE: 1, "host.id": "h\x00"},
         "a host id 'h\\x00' holds a NUL character (U+0000)"),
        (EVENT_HOLD, {ATTR_HOLD: "lease", ATTR_HOLD_ID: "\x00", ATTR_HOLD_UNTIL: 0},
         "lastactive.hold.id '\\x00' holds a NUL character"),
    ],
    ids=["hold until 1e18 s", "exit code 2**31", "a 600-character id", "a NUL in an id",
         "a NUL in a hold id"],
)  # fmt: skip
def test_an_out_of_range_event_is_rejected_by_name(
    served: Any, name: str, attrs: dict[str, Any], message: str
) -> None:
    c, db = served
    before = _answers(c)
    reply = _event(c, name, {ATTR_SESSION_ID: "poisoned", **attrs})
    assert reply.partial_success.rejected_log_records == 1
    assert message in reply.partial_success.error_message
    assert _answers(c) == before
    again = _restarted(db, c)
    try:
        _answers(again)
    finally:
        again.stop()


def test_any_id_can_be_fetched(served: Any) -> None:
    c, _ = served
    for sid in ("a/b", "/", "../x", "with space", "new\nline", "%2F"):
        body = json.dumps({"action": "spawn", "sessionKey": sid}).encode()
        status, _, _ = c.post("/v1/agent-events", body, JSON)
        assert status == 200
        got, body = c.get("/v1/sessions/" + urllib.parse.quote(sid, safe=""))
        assert got == 200 and body["id"] == sid, sid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[defaults]\nhibernate_after = inf\n", "hibernate_after"),
        (b"[defaults]\nidle_after = nan\n", "idle_after"),
        (b"[defaults]\nstuck_after = 1e300\n", "stuck_after"),
        (b"[defaults]\nidle_after = \xff\n", "codec"),
        (b"a = " + b"[" * 5000, "nested too deeply"),
    ],
    ids=["inf", "nan", "1e300", "not UTF-8", "deep"],
)
def test_every_bad_policy_value_is_a_policy_error(
    tmp_path: Path, text: bytes, message: str
) -> None:
    path = tmp_path / "policy.toml"
    path.write_bytes(text)
    with pytest.raises(PolicyError, match=message):
        load_policy(path)


def test_a_malformed_row_is_skipped_and_logged_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "state.db"
    c = InProcessCollector(SqliteStore(db)).start()
    last_input(c, "good", 5)
    c.stop()
    with sqlite3.connect(db) as raw:
        raw.execute(
            "INSERT INTO entities (kind, id, first_seen, last_seen, sources, input_bytes, "
            "output_bytes) VALUES ('session', 'bad', 1, 1, 'not json', 0, 0), "
            "('planet', 'pluto', 1, 1, '{}', 0, 0), ('session', 'text', 'x', 1, '{}', 0, 0)"
        )
    again = InProcessCollector(SqliteStore(db)).start()
    try:
        assert again.session("good") is not None
        assert all(again.session(s) is None for s in ("bad", "pluto", "text"))
        assert "skipping the unreadable row 'session', 'bad'" in caplog.text
    finally:
        again.stop()


def test_a_decisions_horizon_out_of_range_is_invalid(served: Any) -> None:
    c, _ = served
    for within in ("inf", "nan", "1e300", "-1"):
        status, body = c.get(f"/v1/decisions?within={within}")
        assert status == 400 and "within" in body["detail"], within
    channel, stub = c.grpc_stub()
    with channel:
        for within in (float("inf"), float("nan"), 1e300, -1.0):
            with pytest.raises(grpc.RpcError) as exc:
                stub.Decisions(query_pb2.DecisionsRequest(within_seconds=within), timeout=10)
            assert exc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _answers(c)
