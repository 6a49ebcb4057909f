"""Shared fixtures: a real ``lastactive serve`` subprocess on loopback, free ports, temp DB."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from lastactive.collector.proto import query_pb2, query_pb2_grpc

_READY = re.compile(r"on 127\.0\.0\.1:(\d+), OTLP/HTTP and query HTTP on http://127\.0\.0\.1:(\d+)")


class Collector:
    """A ``lastactive serve`` process. ``start()`` waits for its ready line."""

    def __init__(self, db: Path, *extra: str) -> None:
        self.db = db
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.grpc_port = self.http_port = 0

    def start(self) -> Collector:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lastactive",
                "serve",
                "--grpc-port",
                "0",
                "--http-port",
                "0",
                "--db",
                str(self.db),
                "--flush-interval",
                "0.2",
                *self.extra,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        match = _READY.search(line)
        if not match:
            self.proc.kill()
            raise AssertionError(f"no ready line: {line!r} {self.proc.stderr.read()!r}")  # type: ignore[union-attr]
        self.grpc_port, self.http_port = int(match[1]), int(match[2])
        return self

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self.proc.stderr.close()  # type: ignore[union-attr]
        return code

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"null")

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, str]:
        req = urllib.request.Request(self.http + path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read(), r.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("content-type", "")

    def session(self, sid: str) -> dict[str, Any] | None:
        status, body = self.get(f"/v1/sessions/{sid}")
        return body if status == 200 else None

    def grpc_stub(self) -> tuple[grpc.Channel, query_pb2_grpc.ActivityQueryStub]:
        channel = grpc.insecure_channel(self.grpc_target)
        return channel, query_pb2_grpc.ActivityQueryStub(channel)

    def grpc_session(self, sid: str) -> query_pb2.Entity:
        channel, stub = self.grpc_stub()
        with channel:
            return stub.GetSession(query_pb2.GetRequest(id=sid), timeout=10)


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    """Poll a real process's observable state until ``predicate`` is truthy (returns it)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM a third-party program (a server the test started), SIGKILL if it lingers: how it
    shuts down is not what the test is about."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    """A loopback TCP port free right now, for programs that cannot bind port 0 and report it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """True when something accepts connections on loopback ``port``."""
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Collector]:
    c = Collector(tmp_path / "state.db").start()
    yield c
    if c.proc is not None and c.proc.poll() is None:
        c.stop()


@pytest.fixture
def lastactive_env() -> dict[str, str]:
    """Environment for ``lastactive run`` subprocesses: fast exports, no inherited OTel config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LASTACTIVE_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "300"
    return env
