"""``lastactive host``: the boot is the kernel's boot time, so reporting it again (or a collector
restart) never looks like a new boot."""

from __future__ import annotations

import subprocess
import sys

import psutil

from collector.proto import query_pb2
from instrumentation._host import host_identity
from tests.conftest import Collector

S = 1_000_000_000


def test_boot_is_recorded_once_per_boot(
    collector: Collector, lastactive_env: dict[str, str]
) -> None:
    host_id, _ = host_identity()
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "collector.cli", "host", "--once",
             "--endpoint", f"http://{collector.grpc_target}"],
            env=lastactive_env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        channel, stub = collector.grpc_stub()
        with channel:
            host = stub.GetHost(query_pb2.GetRequest(id=host_id), timeout=10)
        boot = host.sources_unix_nano["boot"]
        assert abs(boot / S - psutil.boot_time()) < 1e-3
