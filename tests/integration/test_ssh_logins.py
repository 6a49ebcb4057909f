"""``lastactive host`` with a real SSH login: Debian's OpenSSH server on loopback records the
login in utmp, the watcher turns it into a ``client`` hold and ``ssh`` presence on the host,
input typed over SSH into ``user`` at the tty's access time (as ``w`` computes IDLE), and the
logout releases the hold."""

from __future__ import annotations

import contextlib
import os
import pty
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import psutil
import pytest

from lastactive.instrumentation._host import host_identity
from tests.helpers import CollectorClient, free_port, listening, stop_process, wait_for

SSHD = "/usr/sbin/sshd"
UTMP = Path("/run/utmp")
S = 1_000_000_000

pytestmark = pytest.mark.skipif(
    not Path(SSHD).exists() or shutil.which("ssh") is None or os.geteuid() != 0,
    reason="needs Debian's openssh-server and openssh-client, as root (.ci/run installs them)",
)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An OpenSSH server on a free loopback port accepting one key for root; yields (port, key)."""
    # Minimal containers boot without these; a real host has both.
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    if not UTMP.exists():
        UTMP.touch(mode=0o664)
    for name in ("host", "user"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / name)],
            check=True,
        )
    port = free_port()
    config = tmp_path / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {tmp_path / 'host'}\n"
        f"AuthorizedKeysFile {tmp_path / 'user.pub'}\nPidFile {tmp_path / 'sshd.pid'}\n"
        "UsePAM no\nPermitRootLogin prohibit-password\nStrictModes no\nPrintMotd no\n"
    )
    server = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: listening(port), what="sshd listening")
        yield port, tmp_path / "user"
    finally:
        stop_process(server)
        assert server.stderr is not None
        server.stderr.close()


def login_terminals() -> set[str]:
    return {u.terminal for u in psutil.users() if u.terminal}


def host_view(collector: CollectorClient) -> dict[str, Any]:
    status, body = collector.get(f"/v1/hosts/{host_identity()[0]}")
    return body if status == 200 else {"held_by": [], "sources": {}}


def test_an_ssh_login_holds_the_host_and_typing_is_user_input(
    collector: CollectorClient, lastactive_env: dict[str, str], sshd: tuple[int, Path]
) -> None:
    port, key = sshd
    before = login_terminals()
    master, slave = pty.openpty()  # the user's terminal, where the test types
    ssh = subprocess.Popen(
        ["ssh", "-tt", "-i", str(key), "-p", str(port), "-o", "BatchMode=yes",
         "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
         "-o", "LogLevel=ERROR", "root@127.0.0.1", "echo in; exec cat >/dev/null"],
        stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
    )  # fmt: skip
    watcher = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "host", "--interval", "0.5",
         "--endpoint", f"http://{collector.grpc_target}"],
        env=lastactive_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        (terminal,) = wait_for(lambda: login_terminals() - before, what="the login in utmp")
        hold = f"login:{terminal}"
        host = wait_for(
            lambda: (
                (h := host_view(collector))
                and any(f"{x['kind']}:{x['id']}" == f"client:{hold}" for x in h["held_by"])
                and h
            ),
            what="the login's client hold",
        )
        assert "ssh" in host["sources"]

        # Typing over SSH: the remote `cat` reads it, which moves the tty's access time (Linux
        # moves it in 8 s steps); `user` on the host follows it exactly.
        tty = Path("/dev") / terminal
        typed_before = tty.stat().st_atime

        def typed() -> float:
            os.write(master, b"hello\r")
            time.sleep(0.5)
            return tty.stat().st_atime if tty.stat().st_atime > typed_before else 0.0

        atime = wait_for(typed, timeout=20, what="the tty's access time to move")
        wait_for(
            lambda: (
                (t := host_view(collector)["sources"].get("user"))
                and abs(datetime.fromisoformat(t).timestamp() - atime) < 1e-3
            ),
            what="user input at the tty's access time",
        )

        os.write(master, b"\x04")  # EOF: cat ends, the session logs out
        assert ssh.wait(timeout=20) == 0
        wait_for(lambda: terminal not in login_terminals(), what="the logout in utmp")
        wait_for(
            lambda: not any(x["id"] == hold for x in host_view(collector)["held_by"]),
            what="the hold released at logout",
        )
    finally:
        for proc in (watcher, ssh):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=20)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        os.close(master)
        os.close(slave)
