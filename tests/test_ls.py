"""``lastactive ls``: the table's rows from the API's JSON (a fixed "now")."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from lastactive._ls import fetch_sessions, human_bytes, human_seconds, ls_command, table
from tests.helpers import CollectorClient, kv, last_input

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def session(sid: str, **over: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "id": sid,
        "host_id": "3d1219c7c4c5aaaa",
        "status": "active",
        "process": {"status": "running", "exit_code": None},
        "held_by": [],
        "last_active": "2026-11-22T11:55:00+00:00",
        "last_activity": "2026-11-22T11:59:48+00:00",
        "last_source": "output",
        "last_seen": "2026-11-22T11:59:58+00:00",
        "idle_seconds": 12.4,
        "output_bytes_per_second": 1536.0,
        "input_bytes_per_second": 0.0,
        "state": "active",
        "runaway": False,
        "stuck": False,
        "hibernate": False,
        "hibernate_at": "2026-11-22T12:29:48+00:00",
        "reason": "last counted activity 12 s ago; hibernate_after 1800 s",
    }
    s.update(over)
    return s


def test_table_rows_say_status_why_and_holds() -> None:
    rows = table(
        [
            session("demo"),
            session("done", process={"status": "exited", "exit_code": 3}),
            session(
                "quiet",
                last_activity=None,
                held_by=[{"kind": "lease"}, {"kind": "client"}],
                hibernate_at=None,
                reason="held by lease L1",
            ),
            session("spin", state="idle", runaway=True, hibernate=True),
        ],
        NOW,
    ).splitlines()
    assert rows[0].split() == ["SESSION", "HOST", "STATUS", "STATE", "LAST", "ACTIVE", "LAST",
                               "ACTIVITY", "IDLE", "HIBERNATE", "HELD", "BY", "BYTES/S",
                               "OUT/IN", "WHY"]  # fmt: skip
    # The full host id; LAST ACTIVE is the API's last_active (engagement), LAST ACTIVITY the
    # latest counted activity with its source.
    assert rows[1].split()[:12] == [
        "demo", "3d1219c7c4c5aaaa", "running", "active", "5m", "ago", "12s", "ago", "(output)",
        "12s", "in", "29m",
    ]  # fmt: skip
    assert rows[1].endswith("last counted activity 12 s ago; hibernate_after 1800 s")
    assert "exited 3" in rows[2]
    assert "2s ago (seen)" in rows[3] and "client,lease" in rows[3]
    assert rows[3].endswith("held by lease L1")
    assert "idle,runaway" in rows[4] and " due " in rows[4]


def test_human_units() -> None:
    assert [human_seconds(s) for s in (5, 61, 7200, 90000)] == ["5s", "1m", "2h", "1d"]
    assert [human_bytes(b) for b in (512, 1536, 3 << 20)] == ["512", "1.5K", "3.0M"]


def test_filters_by_state_and_host_against_a_collector(
    collector: CollectorClient, capsys: pytest.CaptureFixture[str]
) -> None:
    for sid, host in (("a1", "host-a"), ("a2", "host-a"), ("b1", "host-b")):
        last_input(collector, sid, 5, host=host)
    done = ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": kv({"session.id": "a2", "host.id": "host-a"})},
        scope_logs=[logs_pb2.ScopeLogs(log_records=[logs_pb2.LogRecord(
            event_name="lastactive.process.exit", time_unix_nano=time.time_ns(),
            attributes=kv({"process.exit.code": 0}))])],
    )])  # fmt: skip
    status, _, _ = collector.post(
        "/v1/logs", done.SerializeToString(), {"Content-Type": "application/x-protobuf"}
    )
    assert status == 200
    ids = lambda **kw: sorted(s["id"] for s in fetch_sessions(collector.http, **kw))  # noqa: E731
    assert ids() == ["a1", "a2", "b1"]
    assert ids(state="ended") == ["a2"]
    assert ids(state="active", host="host-a") == ["a1"]
    assert ids(state="runaway") == []
    assert len(fetch_sessions(collector.http, limit=1, state="active")) == 1
    assert ls_command(collector.http, "host-a", 0, True, "ended") == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == ["a2"]
