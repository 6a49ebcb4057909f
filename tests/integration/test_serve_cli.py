"""``lastactive serve`` start-up errors: clear message, exit status 1, the first server intact."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import CollectorClient

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
