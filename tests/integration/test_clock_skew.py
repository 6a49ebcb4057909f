"""Reporters whose clocks are wrong (``faketime``): ``lastactive run`` an hour behind keeps its
typing user active, an hour ahead lets its session go idle (issue 10, items 1 and 2)."""

from __future__ import annotations

import os
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.helpers import InProcessCollector, read_until, shell_under_run, wait_for


@contextmanager
def skewed_shell(
    collector: InProcessCollector, env: dict[str, str], offset: str, sid: str
) -> Iterator[int]:
    """``lastactive run -- bash`` whose wall clock is ``offset`` off (its monotonic clock is
    right, as on a host whose clock NTP has not corrected yet); yields the PTY's master."""
    env = {**env, "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    with shell_under_run(collector, env, sid, prefix=("faketime", "-f", offset)) as (master, _):
        yield master


def type_lines(master: int, n: int) -> None:
    for _ in range(n):
        os.write(master, b"echo typed\r")
        read_until(master, b"READY> ")
        time.sleep(0.2)


def started(tmp_path: Path, idle_after: float) -> InProcessCollector:
    policy = tmp_path / "policy.toml"
    policy.write_text(f"[defaults]\nidle_after = {idle_after}\nhibernate_after = 3600\n")
    return InProcessCollector(policy=policy, flush_interval=0.2).start()


def field(collector: InProcessCollector, sid: str) -> dict[str, Any]:
    s = collector.session(sid)
    assert s is not None
    return s


def test_a_reporter_an_hour_behind_keeps_its_typing_user_active(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    collector = started(tmp_path, idle_after=60)
    try:
        with skewed_shell(collector, lastactive_env, "-1h", "behind") as master:
            type_lines(master, 10)
            s = wait_for(lambda: (s := field(collector, "behind"))["last_active"] and s,
                         what="typing reported")  # fmt: skip
            assert abs(s["clock_offset_seconds"] - 3600) < 30
            # Not an hour: seconds at most (how many depends on this machine's load).
            assert s["idle_seconds"] < 60 and s["state"] == "active" and not s["hibernate"]
            _, body = collector.get("/v1/reporters?skewed=true")
            assert [r["service_name"] for r in body["reporters"]] == ["lastactive-run"]
            with urllib.request.urlopen(f"{collector.http}/metrics", timeout=10) as r:
                assert 'lastactive_reporters{clock="skewed"} 1.0' in r.read().decode()
    finally:
        collector.stop()


def test_a_reporter_an_hour_ahead_goes_idle_when_its_user_stops(
    tmp_path: Path, lastactive_env: dict[str, str]
) -> None:
    collector = started(tmp_path, idle_after=2)
    try:
        with skewed_shell(collector, lastactive_env, "+1h", "ahead") as master:
            type_lines(master, 3)
            typed = wait_for(lambda: (s := field(collector, "ahead"))["last_active"] and s,
                             what="typing reported")  # fmt: skip
            assert abs(typed["clock_offset_seconds"] + 3600) < 30
            # The wrapper keeps exporting the same last input time (an hour ahead) every
            # 0.3 s; it must not count as fresh activity. (The three lines may span two
            # exports: the last one's time is the one that stays.)
            idle = wait_for(lambda: (s := field(collector, "ahead"))["state"] == "idle" and s,
                            timeout=20, what="idle after the user stopped")  # fmt: skip
            assert idle["last_active"] >= typed["last_active"]
            time.sleep(1.0)  # three more exports of the same last input time
            again = field(collector, "ahead")
            assert (again["last_active"], again["state"]) == (idle["last_active"], "idle")
    finally:
        collector.stop()
