"""``GET /v1/decisions`` and gRPC ``Decisions`` on the real servers (in this process) with a
policy file; a watch resumed after its last event id over SSE and gRPC."""

from __future__ import annotations

import json
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from lastactive.collector._http._decisions import (
    DecisionList,
    DecisionOut,
    _iso,
    decision_text,
    decisions_body,
)
from lastactive.collector._http._query import EvaluationOut, holds_out
from lastactive.collector._sliced import ENCODE_SLICE
from lastactive.collector._state import ActivityState, Identity
from lastactive.collector.policy import Decision, Policy, decide
from lastactive.collector.proto import query_pb2
from tests.helpers import InProcessCollector, S, kv, last_input, slices_of, sse_events, wait_for

PROTO = {"Content-Type": "application/x-protobuf"}
JSON = {"Content-Type": "application/json"}


def hold_request(sid: str, kind: str, hold_id: str, until: float) -> ExportLogsServiceRequest:
    attrs = {"lastactive.hold": kind, "lastactive.hold.id": hold_id, "lastactive.hold.until": until}
    record = logs_pb2.LogRecord(event_name="lastactive.hold", attributes=kv(attrs))
    return ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": kv({"session.id": sid, "host.id": "h9"})},
        scope_logs=[logs_pb2.ScopeLogs(log_records=[record])],
    )])  # fmt: skip


def test_decisions_over_http_and_grpc(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 30\nhibernate_after = 60\n"
        "[[overrides]]\nmatch = { session_prefix = 'keep-' }\nhibernate_after = 3600\n"
    )
    c = InProcessCollector(policy=policy).start()
    try:
        last_input(c, "old", 100)
        last_input(c, "soon", 10)
        last_input(c, "keep-me", 100)
        status, body = c.get("/v1/decisions?within=3600")
        assert status == 200
        due = {d["id"]: d for d in body["hibernate"]}
        # Hosts count their sessions' activity; the override matches the session, not its host.
        assert set(due) == {"old", "h-old", "h-keep-me"}
        assert due["old"]["state"] == "idle" and "hibernate_after 60 s" in due["old"]["reason"]
        soon = [d["id"] for d in body["due_soon"]]
        assert set(soon[:2]) == {"soon", "h-soon"} and soon[2:] == ["keep-me"]
        channel, stub = c.grpc_stub()
        with channel:
            resp = stub.Decisions(query_pb2.DecisionsRequest(within_seconds=3600), timeout=10)
        assert {d.id for d in resp.hibernate} == set(due)
        assert [d.id for d in resp.due_soon][2:] == ["keep-me"]
        assert all(d.hibernate_at_unix_nano > 0 and d.reason for d in resp.hibernate)
    finally:
        c.stop()


def test_each_list_holds_its_first_limit_entries(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 60\n")
    c = InProcessCollector(policy=policy).start()
    try:
        for i in range(5):
            last_input(c, f"s{i}", 100 + i)  # s4 idle the longest: the most urgent
        _, whole = c.get("/v1/decisions?within=0")
        assert not whole["truncated"] and len(whole["hibernate"]) == 10  # 5 sessions, 5 hosts
        status, cut = c.get("/v1/decisions?within=0&limit=3")
        assert status == 200 and cut["truncated"]
        assert cut["hibernate"] == whole["hibernate"][:3]
        assert [d["id"] for d in cut["hibernate"]][:1] in (["s4"], ["h-s4"])
        assert c.get("/v1/decisions?limit=-1")[0] == 400
        channel, stub = c.grpc_stub()
        with channel:
            resp = stub.Decisions(query_pb2.DecisionsRequest(limit=3), timeout=10)
            assert resp.truncated and [d.id for d in resp.hibernate] == [
                d["id"] for d in cut["hibernate"]
            ]
            resp = stub.Decisions(query_pb2.DecisionsRequest(), timeout=10)  # 0: the default
            assert not resp.truncated and len(resp.hibernate) == 10
    finally:
        c.stop()


def test_every_session_and_host_carries_its_decision(tmp_path: Path) -> None:
    """Issue 10: the evaluation is on every session and host, in HTTP and gRPC, and
    /v1/decisions lists what is held, with the hold."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 60\n")
    c = InProcessCollector(policy=policy).start()
    try:
        last_input(c, "old", 100)
        status, s = c.get("/v1/sessions/old")
        assert status == 200
        assert (s["state"], s["hibernate"], s["runaway"], s["stuck"]) == (
            "idle",
            True,
            False,
            False,
        )
        assert s["hibernate_at"] is not None and "hibernate_after 60 s" in s["reason"]
        assert s["runaway_reason"] == "output 0 B/s over 30 s < 1 MiB/s"
        assert s["stuck_reason"] == "not an agent session"
        status, host = c.get("/v1/hosts/h-old")
        assert status == 200 and host["state"] == "idle" and host["hibernate"]

        held = {"action": "spawn", "sessionKey": "busy", "agentName": "codey", "hostId": "h9"}
        assert c.post("/v1/agent-events", json.dumps(held).encode(), JSON)[0] == 200
        hold = hold_request("busy", "tool", "Bash/toolu_1", 0.0)
        assert c.post("/v1/logs", hold.SerializeToString(), PROTO)[0] == 200
        status, s = c.get("/v1/sessions/busy")
        assert (s["host_id"], s["state"], s["hibernate_at"], s["turn"]) == (
            "h9", "active", None, "working",
        )  # fmt: skip
        assert s["reason"].endswith("held by tool Bash/toolu_1")
        assert [(h["kind"], h["counts"]) for h in s["held_by"]] == [("tool", True)]
        status, body = c.get("/v1/decisions")
        held_by = {d["id"]: [h["id"] for h in d["held_by"]] for d in body["held"]}
        assert held_by == {"busy": ["Bash/toolu_1"], "h9": ["Bash/toolu_1"]}
        # The body is made without models: it is what the schema says, as the sessions show it.
        assert DecisionList.model_validate(body).model_dump(mode="json") == body
        busy = next(d for d in body["held"] if d["id"] == "busy")
        assert busy["held_by"] == s["held_by"]
        old = next(d for d in body["hibernate"] if d["id"] == "old")
        _, s_old = c.get("/v1/sessions/old")
        assert {k: s_old[k] for k in old if k != "held_by"} == {
            k: v for k, v in old.items() if k != "held_by"
        }

        channel, stub = c.grpc_stub()
        with channel:
            e = stub.GetSession(query_pb2.GetRequest(id="old"), timeout=10)
            assert (e.state, e.hibernate, e.hibernate_at_unix_nano > 0) == ("idle", True, True)
            assert e.runaway_reason and e.stuck_reason == "not an agent session"
            b = stub.GetSession(query_pb2.GetRequest(id="busy"), timeout=10)
            assert (b.turn, b.hibernate_at_unix_nano, b.held_by[0].counts) == ("working", 0, True)
            resp = stub.Decisions(query_pb2.DecisionsRequest(within_seconds=0), timeout=10)
            assert sorted(d.id for d in resp.held) == ["busy", "h9"]
            assert all(d.held_by[0].id == "Bash/toolu_1" for d in resp.held)
    finally:
        c.stop()


def _model(d: Decision) -> DecisionOut:
    """``d`` as the API's model, built the way the query API builds its models."""
    v, e = d.view, d.evaluation
    holds = holds_out(e.held_by, e.held_by)
    return DecisionOut(
        kind=v.kind, id=v.id, host_id=v.host_id, held_by=holds, **EvaluationOut.fields_of(e)
    )


def test_the_decisions_body_is_encoded_a_slice_at_a_time() -> None:
    """Twice a slice and one due now, and one held: the models of every entry, an encoding
    slice at a time, in compact JSON as ``json.dumps`` writes it."""
    now = 1_800_000_000 * S
    state = ActivityState()
    for i in range(2 * ENCODE_SLICE + 1):
        ents = state.resolve(Identity(session_id=f"s{i:04d}"), now)
        state.activity(ents, "input", now - (7200 + i) * S + i * 1234567)
    state.hold(state.resolve(Identity(session_id="held"), now), "lease", "l1", 0, now)
    out = decide(state.views(now), Policy(), now, 600 * S)
    assert len(out.hibernate) == 2 * ENCODE_SLICE + 1 and len(out.held) == 1
    slices, body = slices_of(decisions_body(out))
    assert slices == 4  # three for those due, one for the held
    assert json.dumps(json.loads(body), separators=(",", ":")) == body
    assert DecisionList.model_validate_json(body) == DecisionList(
        hibernate=[_model(d) for d in out.hibernate],
        due_soon=[],
        held=[_model(d) for d in out.held],
        truncated=False,
    )


_TEXT = st.text(max_size=12)


@given(
    sid=st.text(min_size=1, max_size=12),
    host=st.none() | st.text(min_size=1, max_size=12),
    hold_id=_TEXT,
    reason=st.none() | _TEXT,
    until_s=st.sampled_from([0, 3600]),
)
@example(sid='"\\\x00\u2028é', host="h", hold_id="\ud7ff", reason="\n", until_s=0)
def test_a_decision_entry_is_its_models_json_whatever_the_texts(
    sid: str, host: str | None, hold_id: str, reason: str | None, until_s: int
) -> None:
    """Ids, host ids and hold reasons of any text (quotes, backslashes, control and
    non-ASCII characters): each entry's text is its model's JSON, escaped as ``json.dumps``
    escapes (ASCII)."""
    now = 1_800_000_000 * S + 123_456_789
    state = ActivityState()
    ents = state.resolve(Identity(session_id=sid, host_id=host), now)
    state.activity(ents, "input", now - 7200 * S)
    ends = now + until_s * S if until_s else 0
    state.hold(ents[:1], "lease", hold_id, ends, now - S, reason)
    out = decide(state.views(now), Policy(), now, 600 * S)
    entries = [*out.hibernate, *out.due_soon, *out.held]
    assert entries and out.held
    for d in entries:
        text = decision_text(d)
        assert json.dumps(json.loads(text), separators=(",", ":")) == text
        assert DecisionOut.model_validate_json(text) == _model(d)


def _sse(url: str, headers: dict[str, str], count: int) -> list[tuple[str | None, str, Any]]:
    """The first ``count`` events of an SSE stream: (id, event, data)."""
    out: list[tuple[str | None, str, Any]] = []
    req = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(req, timeout=10) as resp:
        for event in sse_events(resp):
            out.append(event)
            if len(out) == count:
                return out
    raise AssertionError(f"the stream ended after {out}")


def test_a_watch_resumes_after_its_last_event_id_over_sse_and_grpc(tmp_path: Path) -> None:
    """A watcher that reconnects with the id of the last event it got (SSE ``Last-Event-ID``,
    gRPC ``after_event_id``) gets what happened while it was away, and no snapshot."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 60\n")
    now = [time.time_ns()]
    c = InProcessCollector(policy=policy, clock=lambda: now[0]).start()
    try:
        last_input(c, "r1", 0)
        first = _sse(f"{c.http}/v1/watch?session=r1", {}, 1)
        (snapshot_id, name, data), = first  # fmt: skip
        assert name == "snapshot" and [s["state"] for s in data["states"]] == ["active"]
        assert snapshot_id is not None
        now[0] += 31 * S  # idle while nobody watches...
        wait_for(lambda: c.session("r1")["state"] == "idle", 10, "idle")  # type: ignore[index]
        now[0] += 30 * S  # ...then due for hibernation
        wait_for(lambda: c.session("r1")["hibernate"], 10, "due")  # type: ignore[index]
        missed = _sse(f"{c.http}/v1/watch?session=r1", {"Last-Event-ID": snapshot_id}, 2)
        assert [(n, d["field"], d["current"]) for _, n, d in missed] == [
            ("transition", "state", "idle"), ("transition", "hibernate", "true")
        ]  # fmt: skip
        assert all(event_id for event_id, _, _ in missed)
        channel, stub = c.grpc_stub()
        with channel:
            call = stub.Watch(query_pb2.WatchRequest(session_id="r1", after_event_id=missed[0][0]))
            event = next(call)
            call.cancel()
        assert event.WhichOneof("event") == "transition" and event.transition.field == "hibernate"
        assert event.event_id == missed[1][0]
        stale = _sse(f"{c.http}/v1/watch?session=r1&after=another-process.7", {}, 2)
        assert [n for _, n, _ in stale] == ["resync", "snapshot"]
    finally:
        c.stop()


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
@example(0)
@example(1_795_386_498_999_999_500)  # rounds up into the next second
@example(-1_500_000_000)
def test_a_time_is_the_text_of_its_datetime(ns: int) -> None:
    expected = datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")
    assert _iso(ns) == expected
