"""Idle policy end to end with real processes: ``lastactive run`` prints then goes quiet; a gRPC
``Watch`` and an SSE subscriber both see active -> idle within the debounce plus a second;
``lastactive cull`` reports it (dry run), hibernates it once, and records that back."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

import grpc

from lastactive.collector.proto import query_pb2
from tests.helpers import Collector, wait_for

IDLE_AFTER = 2.0
POLICY = f"[defaults]\nidle_after = {IDLE_AFTER}\nhibernate_after = 3\n"
PROGRAM = "for i in 1 2 3 4 5; do echo tick $i; sleep 0.2; done; sleep 60"
CULL = [sys.executable, "-m", "lastactive", "cull"]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def read_sse(url: str, events: list[tuple[float, str, Any]]) -> None:
    try:
        with urllib.request.urlopen(url, timeout=60) as resp:
            name = ""
            for raw in resp:
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((time.time(), name, json.loads(line[6:])))
    except OSError:
        pass  # the server went away at the end of the test


def read_grpc(call: Any, events: list[tuple[float, Any]]) -> None:
    try:
        for ev in call:
            events.append((time.time(), ev))
    except grpc.RpcError:
        pass  # cancelled at the end of the test


def test_watch_sse_and_cull(tmp_path: Path, lastactive_env: dict[str, str]) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    channel, stub = c.grpc_stub()  # closed in finally
    grpc_events: list[tuple[float, Any]] = []
    sse_events: list[tuple[float, str, Any]] = []
    run = None
    try:
        call = stub.Watch(query_pb2.WatchRequest(session_id="w1"))
        threading.Thread(target=read_grpc, args=(call, grpc_events), daemon=True).start()
        threading.Thread(target=read_sse, args=(f"{c.http}/v1/watch?session=w1", sse_events),
                         daemon=True).start()  # fmt: skip
        wait_for(lambda: grpc_events and sse_events, what="both snapshots")
        assert grpc_events[0][1].WhichOneof("event") == "snapshot"
        assert sse_events[0][1] == "snapshot" and sse_events[0][2] == {"states": [], "more": False}

        run = subprocess.Popen(
            [sys.executable, "-m", "lastactive", "run", "--session-id", "w1",
             "--endpoint", f"http://{c.grpc_target}", "--", "sh", "-c", PROGRAM],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=lastactive_env,
        )  # fmt: skip

        def grpc_idle() -> Any:
            return next((t for t, e in grpc_events if e.WhichOneof("event") == "transition"
                         and e.transition.field == "state" and e.transition.current == "idle"),
                        None)  # fmt: skip

        def sse_idle() -> Any:
            return next((t for t, name, d in sse_events if name == "transition"
                         and d["field"] == "state" and d["current"] == "idle"), None)  # fmt: skip

        grpc_at = wait_for(grpc_idle, timeout=30, what="idle over gRPC")
        sse_at = wait_for(sse_idle, timeout=30, what="idle over SSE")
        s = c.session("w1")
        assert s is not None
        quiet_since = _epoch(s["sources"]["output"])
        for arrived in (grpc_at, sse_at):  # within the debounce plus a second
            assert IDLE_AFTER <= arrived - quiet_since < IDLE_AFTER + 1.0
        states = [d["current"] for _, name, d in sse_events
                  if name == "transition" and d["field"] == "state"]  # fmt: skip
        assert states[:2] == ["active", "idle"]

        def due() -> bool:
            return any(d["id"] == "w1" for d in c.get("/v1/decisions?within=0")[1]["hibernate"])

        wait_for(due, timeout=30, what="hibernation due")
        dry = subprocess.run([*CULL, "--url", c.http, "--dry-run", "--once"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
        assert "would hibernate session w1" in dry.stderr
        assert "hibernate_after 3 s" in dry.stderr

        marks = tmp_path / "hibernated"
        marks.mkdir()
        act = [*CULL, "--url", c.http, "--once", "--command", f"touch {marks}/{{kind}}-{{id}}"]
        first = subprocess.run(act, capture_output=True, text=True, timeout=60, check=True)
        assert "hibernated session w1" in first.stderr
        assert (marks / "session-w1").exists()
        second = subprocess.run(act, capture_output=True, text=True, timeout=60, check=True)
        assert "session w1" not in second.stderr  # never twice on the same deadline
        wait_for(lambda: any(e.WhichOneof("event") == "transition"
                             and e.transition.current == "hibernated" for _, e in grpc_events),
                 what="the hibernation pushed to watchers")  # fmt: skip
        s = c.session("w1")
        assert s is not None and "hibernate" in s["sources"]
    finally:
        if run is not None:
            run.kill()
            run.wait()
        channel.close()
        c.stop()


def test_a_runaway_program_becomes_runaway_and_leaves_it_when_quiet(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nrunaway_bytes_per_second = 200000\n")
    c = Collector(tmp_path / "state.db", "--policy", str(policy)).start()
    channel, stub = c.grpc_stub()  # closed in finally
    events: list[tuple[float, Any]] = []
    run = None
    try:
        call = stub.Watch(query_pb2.WatchRequest(session_id="spin"))
        threading.Thread(target=read_grpc, args=(call, events), daemon=True).start()
        # As fast as it can for a moment (about 30 MB), then quiet.
        run = subprocess.Popen(
            [sys.executable, "-m", "lastactive", "run", "--session-id", "spin",
             "--endpoint", f"http://{c.grpc_target}", "--", "sh", "-c",
             "yes spinning-out-of-control | head -c 30000000; sleep 120"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=lastactive_env,
        )  # fmt: skip

        def runaway(value: str) -> Any:
            return next((t for t, e in events if e.WhichOneof("event") == "transition"
                         and e.transition.field == "runaway" and e.transition.current == value),
                        None)  # fmt: skip

        started = wait_for(lambda: runaway("true"), timeout=30, what="runaway")
        s = c.session("spin")
        assert s is not None and s["output_bytes_per_second"] >= 200_000
        # Quiet now: it leaves runaway once the 30 s rate window no longer holds the burst.
        ended = wait_for(lambda: runaway("false"), timeout=60, what="leaving runaway")
        assert ended > started
    finally:
        if run is not None:
            run.kill()
            run.wait()
        channel.close()
        c.stop()
