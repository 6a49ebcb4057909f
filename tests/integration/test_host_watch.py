"""``lastactive host``: the boot is the kernel's boot time, so reporting it again (or a collector
restart) never looks like a new boot."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import psutil

from lastactive.collector.proto import query_pb2
from lastactive.instrumentation._host import host_identity
from tests.helpers import CollectorClient, wait_for

S = 1_000_000_000


def test_boot_is_recorded_once_per_boot(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    host_id, _ = host_identity()
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-m", "lastactive", "host", "--once",
             "--endpoint", f"http://{collector.grpc_target}"],
            env=lastactive_env, capture_output=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        channel, stub = collector.grpc_stub()
        with channel:
            host = stub.GetHost(query_pb2.GetRequest(id=host_id), timeout=10)
        boot = host.sources_unix_nano["boot"]
        assert abs(boot / S - psutil.boot_time()) < 1e-3


def handles(pid: int, sig: signal.Signals) -> bool:
    """True once process ``pid`` has a handler for ``sig`` (its SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    return False


def test_sigterm_stops_the_watcher_now_not_at_its_next_check(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    """Whichever thread the kernel would pick, the watcher's main thread takes SIGTERM and the
    watcher exits without waiting out its 10-minute interval."""
    for _ in range(3):
        watcher = subprocess.Popen(
            [sys.executable, "-m", "lastactive", "host", "--interval", "600",
             "--endpoint", f"http://{collector.grpc_target}"],
            env=lastactive_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            pid = watcher.pid
            wait_for(lambda pid=pid: handles(pid, signal.SIGTERM), what="the handler")
            watcher.send_signal(signal.SIGTERM)
            assert watcher.wait(timeout=30) == 0
        finally:
            if watcher.poll() is None:
                watcher.kill()
                watcher.wait()
