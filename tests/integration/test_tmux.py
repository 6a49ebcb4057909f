"""Real tmux (Debian's): the hooks installed by ``lastactive tmux --install`` report a client
attaching (presence starts: a ``client`` hold) and detaching (it stops)."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import CollectorClient, wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)"
)


@pytest.fixture
def tmux_env(tmp_path: Path, lastactive_env: dict[str, str]) -> Iterator[dict[str, str]]:
    """A private tmux server (its socket under tmp_path), killed at the end."""
    env = {k: v for k, v in lastactive_env.items() if k != "TMUX"}
    env["TMUX_TMPDIR"] = str(tmp_path)
    env["TERM"] = "xterm"
    yield env
    subprocess.run(["tmux", "kill-server"], env=env, capture_output=True, check=False)


def holders(collector: CollectorClient, sid: str) -> list[str]:
    s = collector.session(sid)
    return [] if s is None else [f"{h['kind']}:{h['id']}" for h in s["held_by"]]


def test_attach_and_detach_start_and_stop_presence(
    collector: CollectorClient, tmux_env: dict[str, str]
) -> None:
    def tmux(*args: str) -> None:
        subprocess.run(["tmux", "-f", "/dev/null", *args], env=tmux_env, check=True, timeout=10)

    tmux("new-session", "-d", "-s", "work", "-x", "80", "-y", "24", "sh")
    tmux("new-session", "-d", "-s", "other", "sh")
    installed = subprocess.run(
        [sys.executable, "-m", "lastactive", "tmux", "--install", "--url", collector.http],
        env=tmux_env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stderr

    master, slave = pty.openpty()
    client = subprocess.Popen(
        ["tmux", "attach-session", "-t", "work"],
        stdin=slave, stdout=slave, stderr=slave, env=tmux_env, start_new_session=True,
    )  # fmt: skip
    drain = threading.Thread(target=_drain, args=(master,), daemon=True)
    drain.start()
    try:
        held = wait_for(lambda: holders(collector, "tmux:work"), what="presence on attach")
        assert held == ["client:tmux"]
        s = collector.session("tmux:work")
        assert s is not None and "connection" in s["sources"]
        assert s["idle_seconds"] >= 0  # presence is shown, not counted as activity

        tmux("switch-client", "-c", os.ttyname(slave), "-t", "other")
        wait_for(lambda: holders(collector, "tmux:other"), what="presence moves with the client")
        wait_for(lambda: not holders(collector, "tmux:work"), what="and leaves the old session")

        tmux("detach-client", "-s", "other")
        wait_for(lambda: not holders(collector, "tmux:other"), what="presence ends on detach")
        assert client.wait(timeout=10) == 0
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        os.close(slave)
        os.close(master)


def _drain(fd: int) -> None:
    """Read the client's screen output so it never blocks on a full terminal."""
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
