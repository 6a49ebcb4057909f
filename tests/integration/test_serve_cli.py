"""``lastactive serve`` start-up errors (clear message, exit status 1, the first server
intact) and its stop (SIGTERM: quick, with what was acknowledged committed)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from lastactive.collector._auth import Scope, create_credential
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


def test_print_config_and_a_config_file(tmp_path: Path) -> None:
    config = tmp_path / "serve.toml"
    config.write_text('grpc_port = 0\nhttp_port = 0\nlog_format = "json"\n')
    done = subprocess.run(
        [*SERVE, "--config", str(config), "--retention", "60", "--print-config"],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    assert 'log_format = "json"' in done.stdout and "retention = 60.0" in done.stdout
    bad = tmp_path / "bad.toml"
    bad.write_text("http-port = 1\n")
    done = subprocess.run(
        [*SERVE, "--config", str(bad)], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 2 and "http-port is not a setting" in done.stderr


def test_json_logs_one_object_per_line_and_the_access_log_only_when_asked(
    tmp_path: Path,
) -> None:
    auth = tmp_path / "auth.json"
    create_credential(auth, [Scope.READ])
    for access in (False, True):
        extra = ["--log-format", "json", "--auth-file", str(auth)]
        c = Collector(tmp_path / f"{access}.db", *extra, *(["--access-log"] if access else []))
        c.start()
        assert c.proc is not None
        assert c.get("/healthz")[0] == 200
        c.proc.send_signal(signal.SIGHUP)  # logs a warning: the credentials reloaded
        c.proc.send_signal(signal.SIGTERM)  # handled after it, in order, on the loop
        c.proc.communicate(timeout=20)
        lines = [json.loads(line) for line in c.log().splitlines()]
        reload = [x for x in lines if "SIGHUP" in x["message"]]
        assert reload and {"time", "level", "logger", "message"} <= set(reload[0])
        assert reload[0]["level"] == "WARNING" and reload[0]["time"].endswith("+00:00")
        assert any("/healthz" in x["message"] for x in lines) == access
