"""End to end, no mocks: ``lastactive serve`` and ``lastactive run`` as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.helpers import Collector, wait_for

# Prints a line every 0.3 s for ~2.4 s, stays quiet, then exits with 7.
PROGRAM = "for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 0.3; done; sleep 4; exit 7"


def test_run_then_query_over_http_and_grpc_then_restart(
    collector_process: Collector, lastactive_env: dict[str, str], tmp_path: Path
) -> None:
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lastactive",
            "run",
            "--session-id",
            "e2e-1",
            "--endpoint",
            f"http://{collector_process.grpc_target}",
            "--",
            "sh",
            "-c",
            PROGRAM,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        env=lastactive_env,
    )
    try:
        # The session appears, with output counted, while the program prints.
        first = wait_for(
            lambda: (
                (s := collector_process.session("e2e-1"))
                and s["output_bytes"] > 0
                and s["process"]["pid"]
                and s
            ),
            what="session with output and its pid",
        )
        assert first["process"]["status"] == "running"
        later = wait_for(
            lambda: (
                (s := collector_process.session("e2e-1"))
                and s["sources"]["output"] > first["sources"]["output"]
                and s["output_bytes"] > first["output_bytes"]
                and s
            ),
            what="last output advancing",
        )
        assert later["last_activity"] >= first["last_activity"]
        assert later["last_source"] in ("output", "start")
        g = collector_process.grpc_session("e2e-1")
        assert g.output_bytes >= later["output_bytes"]
        assert g.sources_unix_nano["output"] > 0
        assert g.process_status == "running"

        # Quiet: idle_seconds grows while nothing is printed (the process is still alive).
        quiet = wait_for(
            lambda: (
                (s := collector_process.session("e2e-1"))
                and s["output_bytes"] >= 56
                and s["idle_seconds"] >= 1.0
                and s
            ),
            what="idle after the output stops",
        )
        assert quiet["process"]["status"] == "running"
        assert quiet["last_source"] == "output"
        quieter = wait_for(
            lambda: (
                (s := collector_process.session("e2e-1"))
                and s["idle_seconds"] > quiet["idle_seconds"] + 0.5
                and s
            ),
            what="idle_seconds growing",
        )
        assert quieter["sources"]["output"] == quiet["sources"]["output"]
        assert quieter["last_seen"] >= quiet["last_seen"]  # still alive: liveness moves on

        assert run.wait(timeout=30) == 7
        out = run.stdout.read()  # type: ignore[union-attr]
        assert out.count(b"tick") == 8
    finally:
        if run.poll() is None:
            run.kill()
        run.stdout.close()  # type: ignore[union-attr]

    done = wait_for(
        lambda: (
            (s := collector_process.session("e2e-1")) and s["process"]["status"] == "exited" and s
        ),
        what="exit recorded",
    )
    assert done["process"]["exit_code"] == 7
    assert done["output_bytes"] == len(out)
    assert done["last_source"] == "exit"
    g = collector_process.grpc_session("e2e-1")
    assert (g.exited, g.exit_code, g.process_status) == (True, 7, "exited")

    ls = subprocess.run(
        [sys.executable, "-m", "lastactive", "ls", "--url", collector_process.http],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    header, row = ls.stdout.splitlines()
    assert header.split()[:3] == ["SESSION", "HOST", "STATUS"]
    assert row.startswith("e2e-1") and "exited 7" in row and "(exit)" in row

    status, listed = collector_process.get(f"/v1/sessions?host={done['host_id']}")
    assert status == 200 and [s["id"] for s in listed["sessions"]] == ["e2e-1"]
    status, host = collector_process.get(f"/v1/hosts/{done['host_id']}")
    assert status == 200 and host["output_bytes"] == done["output_bytes"]

    # Restart on the same database: the same timestamps come back.
    assert collector_process.stop() == 0
    again = Collector(collector_process.db).start()
    try:
        restored = again.session("e2e-1")
        assert restored is not None
        for key in (
            "first_seen",
            "last_seen",
            "last_activity",
            "sources",
            "output_bytes",
            "process",
            "last_source",
        ):
            assert restored[key] == done[key], key
        assert again.grpc_session("e2e-1").sources_unix_nano == g.sources_unix_nano
    finally:
        again.stop()
