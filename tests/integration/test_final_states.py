"""Ended and dead sessions reach a final state with real processes (issue 10, item 7): an exited
runaway session leaves runaway on /metrics at once, a wrapper killed with SIGKILL shows its
process lost."""

from __future__ import annotations

import signal
import subprocess
import urllib.request
from pathlib import Path

from tests.helpers import RUN, InProcessCollector, wait_for


def started(tmp_path: Path) -> InProcessCollector:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nrunaway_bytes_per_second = 10000\nlost_after = 2\n")
    return InProcessCollector(policy=policy, flush_interval=0.2).start()


def metrics(collector: InProcessCollector) -> str:
    with urllib.request.urlopen(f"{collector.http}/metrics", timeout=10) as r:
        return str(r.read().decode())


def wrapped(
    collector: InProcessCollector, env: dict[str, str], sid: str, *argv: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*RUN, "--session-id", sid, "--endpoint", f"http://{collector.grpc_target}", "--", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def test_an_exited_runaway_session_leaves_runaway_at_its_exit(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    collector = started(tmp_path)
    proc = wrapped(collector, lastactive_env, "spin", "yes")
    try:
        wait_for(lambda: (s := collector.session("spin")) and s["runaway"], what="runaway")
        # /metrics reads the transition engine's conditions, evaluated every tick (TICK_S).
        wait_for(lambda: 'lastactive_sessions{state="runaway"} 1.0' in metrics(collector),
                 what="runaway on /metrics")  # fmt: skip
        proc.send_signal(signal.SIGTERM)  # forwarded to yes; the wrapper reports the exit
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
        s = wait_for(lambda: (s := collector.session("spin"))["state"] == "ended" and s,
                     what="ended")  # fmt: skip
        assert not s["runaway"] and s["output_bytes_per_second"] > 10000  # still in the window
        assert s["runaway_reason"].startswith("exited with code 143")
        text = wait_for(
            lambda: (t := metrics(collector)) and 'lastactive_sessions{state="ended"} 1.0' in t
            and t, what="the exit on /metrics",
        )  # fmt: skip
        assert 'lastactive_sessions{state="runaway"} 0.0' in text
        assert 'lastactive_sessions{state="active"} 0.0' in text
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        collector.stop()


def test_a_wrapper_killed_with_sigkill_shows_its_process_lost(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    collector = started(tmp_path)
    proc = wrapped(collector, lastactive_env, "killed", "sleep", "600")
    try:
        # The start (an event) and the liveness (a metric) are separate exports.
        wait_for(
            lambda: (s := collector.session("killed")) and "process" in s["sources"]
            and s["process"]["status"] == "running",
            what="running, with liveness",
        )  # fmt: skip
        proc.kill()  # no exit event can be sent
        proc.wait()
        s = wait_for(
            lambda: (s := collector.session("killed"))["process"]["status"] == "lost" and s,
            timeout=20, what="the lost process",
        )  # fmt: skip
        assert s["status"] == "active" and "process lost: no liveness" in s["reason"]
        assert collector.grpc_session("killed").process_status == "lost"
    finally:
        collector.stop()
