"""Acknowledged means durable (issue 11): ``lastactive serve`` is SIGKILLed again and again
under real traffic, restarted on the same database each time, and afterwards every one-shot
fact a client was told OK about is there (exits, agent completions and errors, prompts, hold
releases, hibernation records), and the byte total is at least what was acknowledged and at
most what was sent (a restart neither loses nor double-counts bytes: the counter baseline
is committed with the bytes it counted). On SQLite and on PostgreSQL (``--store``)."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from lastactive.client import logs_request
from lastactive.conventions import (
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_UNTIL,
    ATTR_PROCESS_EXIT_CODE,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    EVENT_ACTIVITY,
    EVENT_HOLD,
    EVENT_PROCESS_EXIT,
)
from tests.helpers import Collector, metrics_request, sum_point

pytestmark = pytest.mark.timeout(180)

S = 1_000_000_000
KILLS = 6
EXPORT = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"


class Traffic:
    """Clients that record what the collector acknowledged; they find the current ports in
    ``self.collector`` and treat any failure (the collector being dead) as not acknowledged."""

    def __init__(self, collector: Collector) -> None:
        self.collector = collector
        self.stop = threading.Event()
        self.acked: dict[str, list[Any]] = {
            "exit": [], "agent": [], "prompt": [], "release": [], "hibernate": [], "bytes": []
        }  # fmt: skip
        self.sent_bytes = 0

    def _post(self, path: str, body: dict[str, Any]) -> bool:
        c = self.collector
        data = json.dumps(body).encode()
        req = urllib.request.Request(
            c.http + path, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                reply = json.loads(r.read() or b"{}")
        except (OSError, http.client.HTTPException, ValueError):  # killed mid-answer too
            return False
        return not reply.get("partialSuccess", {}).get("rejectedLogRecords")

    def _event(self, name: str, attrs: dict[str, Any]) -> bool:
        body = logs_request({"service.name": "crash-test"}, [(name, attrs, time.time_ns())])
        return self._post("/v1/logs", body)

    def one_shots(self) -> None:
        n = 0
        while not self.stop.is_set():
            n += 1
            t = time.time_ns()
            if self._event(EVENT_PROCESS_EXIT, {ATTR_SESSION_ID: f"exit-{n}",
                                                 ATTR_PROCESS_EXIT_CODE: n % 200}):  # fmt: skip
                self.acked["exit"].append(n)
            action = "complete" if n % 2 else "error"
            if self._post("/v1/agent-events", {"action": action, "sessionKey": f"agent-{n}",
                                               "result": f"r{n}"}):  # fmt: skip
                self.acked["agent"].append((n, action))
            if self._event(EVENT_ACTIVITY, {ATTR_SESSION_ID: "prompts", ATTR_SOURCE: "prompt"}):
                self.acked["prompt"].append(t)
            hold = {ATTR_SESSION_ID: f"hold-{n}", ATTR_HOLD: "lease", ATTR_HOLD_ID: "x"}
            if self._event(EVENT_HOLD, {**hold, ATTR_HOLD_UNTIL: 0}) and self._event(
                EVENT_HOLD, {**hold, ATTR_HOLD_UNTIL: time.time_ns() / S}
            ):
                self.acked["release"].append(n)
            if self._event(EVENT_ACTIVITY, {ATTR_SESSION_ID: f"hib-{n}", ATTR_SOURCE: "hibernate"}):
                self.acked["hibernate"].append(n)

    def byte_counter(self, start: int) -> None:
        value = 0
        while not self.stop.is_set():
            value += 100
            self.sent_bytes = value
            req = metrics_request(
                "bytes",
                sums={
                    "lastactive.session.io": [
                        sum_point(
                            value, time.time_ns(), start, **{"network.io.direction": "receive"}
                        )
                    ]
                },
            )
            try:  # fmt: skip
                with grpc.insecure_channel(self.collector.grpc_target) as channel:
                    channel.unary_unary(EXPORT)(req.SerializeToString(), timeout=5)
            except grpc.RpcError:
                continue
            self.acked["bytes"].append(value)


def _run(target: Callable[..., None], *args: Any) -> threading.Thread:
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sigkill_loses_no_acknowledged_fact(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    db = tmp_path / "state.db"
    extra = ("--store", request.getfixturevalue("postgres_url")) if store == "postgresql" else ()

    def launch() -> Collector:
        return Collector(db, *extra).start()

    collector = launch()
    start = time.time_ns()  # after the collector started: the stream's whole value counts
    traffic = Traffic(collector)
    threads = [_run(traffic.one_shots), _run(traffic.byte_counter, start)]
    try:
        for kill in range(KILLS):
            time.sleep(0.6 + 0.15 * kill)
            assert collector.proc is not None
            collector.proc.kill()
            collector.proc.wait(10)
            collector = launch()
            traffic.collector = collector
        time.sleep(0.5)
    finally:
        traffic.stop.set()
        for t in threads:
            t.join(20)
    collector.proc.kill()  # type: ignore[union-attr]
    collector.proc.wait(10)  # type: ignore[union-attr]
    after = launch()
    try:
        acked = traffic.acked
        assert all(len(v) > 10 for v in acked.values()), {k: len(v) for k, v in acked.items()}
        for n in acked["exit"]:
            s = after.session(f"exit-{n}")
            assert s is not None and s["process"]["exit_code"] == n % 200, n
        for n, action in acked["agent"]:
            s = after.session(f"agent-{n}")
            want = "completed" if action == "complete" else "error"
            assert s is not None and (s["status"], s["result"]) == (want, f"r{n}"), n
        prompts = after.session("prompts")
        assert prompts is not None
        latest = max(acked["prompt"])
        got = prompts["sources"]["prompt"]
        assert _ns(got) >= latest - 1000, (got, latest)  # ISO text keeps microseconds
        for n in acked["release"]:
            s = after.session(f"hold-{n}")
            assert s is not None and s["held_by"] == [], (n, s and s["held_by"])
        for n in acked["hibernate"]:
            s = after.session(f"hib-{n}")
            assert s is not None and "hibernate" in s["sources"], n
        b = after.session("bytes")
        assert b is not None
        assert max(acked["bytes"]) <= b["input_bytes"] <= traffic.sent_bytes, (
            b["input_bytes"], max(acked["bytes"]), traffic.sent_bytes
        )  # fmt: skip
    finally:
        after.stop()


def _ns(iso: str) -> int:
    from datetime import datetime

    dt = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return int(dt.timestamp()) * S + dt.microsecond * 1000
