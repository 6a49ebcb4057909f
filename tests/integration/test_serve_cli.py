"""``lastactive serve`` start-up errors (clear message, exit status 1, the first server
intact) and its stop (SIGTERM: quick, with what was acknowledged committed)."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lastactive.collector.proto import query_pb2
from tests.helpers import Collector, CollectorClient, last_input

SERVE = [sys.executable, "-m", "lastactive", "serve"]


def test_a_second_collector_cannot_share_the_ports(
    collector: CollectorClient, tmp_path: Path
) -> None:
    for flags in (
        ["--grpc-port", str(collector.grpc_port), "--http-port", "0"],
        ["--grpc-port", "0", "--http-port", str(collector.http_port)],
    ):
        done = subprocess.run(
            [*SERVE, "--db", str(tmp_path / "other.db"), *flags],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 1
        assert "lastactive serve:" in done.stderr
    assert collector.get("/v1/sessions")[0] == 200


def test_invalid_settings_are_named(tmp_path: Path) -> None:
    done = subprocess.run(
        [*SERVE, "--db", str(tmp_path / "x.db"), "--grpc-port", "70000"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 2
    assert "grpc_port" in done.stderr


def test_a_second_collector_on_the_same_database_refuses_to_start(
    collector_process: Collector,
) -> None:
    done = subprocess.run(
        [*SERVE, "--db", str(collector_process.db), "--grpc-port", "0", "--http-port", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "already served by pid" in done.stderr and str(collector_process.db) in done.stderr
    assert collector_process.get("/v1/sessions")[0] == 200


def test_sigterm_stops_within_half_a_second_with_watch_streams_open(
    collector_process: Collector,
) -> None:
    """Open SSE and gRPC watch streams (one reading, one never reading) must not hold up
    the exit, and what was acknowledged is committed."""
    c = collector_process
    last_input(c, "before-term", 5)
    readers = []
    for _ in range(3):
        s = socket.create_connection(("127.0.0.1", c.http_port))
        s.sendall(b"GET /v1/watch HTTP/1.1\r\nHost: x\r\n\r\n")
        readers.append(s)
    assert readers[0].recv(100).startswith(b"HTTP/1.1 200")  # the others never read
    channel, stub = c.grpc_stub()
    watch = stub.Watch(query_pb2.WatchRequest())
    next(watch)  # the snapshot
    assert c.proc is not None
    began = time.monotonic()
    c.proc.send_signal(signal.SIGTERM)
    assert c.proc.wait(10) == 0
    took = time.monotonic() - began
    channel.close()
    for s in readers:
        s.close()
    # ~0.3 s here (uvicorn notices should_exit on its 0.1 s tick, then 0.1 s grace; process
    # exit); the bound leaves room for a loaded CI machine and still catches the 2.4-2.9 s
    # of a stream holding the exit up.
    assert took < 1.0, f"SIGTERM took {took:.2f} s"
    again = Collector(c.db).start()
    try:
        assert again.session("before-term") is not None
    finally:
        again.stop()
