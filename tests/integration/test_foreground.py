"""Foreground work in ``lastactive run -- bash``: a silent CPU-bound command counts as work and
holds the session; a shell idle at its prompt does not."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

from tests.helpers import RUN, CollectorClient, read_until, shell_under_run, wait_for


def test_silent_cpu_bound_command_is_work_and_idle_prompt_is_not(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    env = {**lastactive_env, "PS1": "READY> ", "TERM": "dumb"}
    master, slave = pty.openpty()
    # ^C must reach the loop however this test was started: a background job of a shell
    # without job control ignores SIGINT, and every program started under it would too.
    proc = subprocess.Popen(
        ["env", "--default-signal=INT", *RUN, "--session-id", "fg",
         "--endpoint", f"http://{collector.grpc_target}",
         "--", "bash", "--norc", "--noprofile", "-i"],
        stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        read_until(master, b"READY> ")
        wait_for(lambda: (s := collector.session("fg")) and "process" in s["sources"],
                 what="the monitor's first checks")  # fmt: skip
        time.sleep(1.0)  # several checks (every 0.3 s) while bash sits at its prompt
        idle = collector.session("fg")
        assert idle is not None
        assert "foreground" not in idle["sources"] and idle["held_by"] == []

        busy_loop = f"{sys.executable} -c 'while True: pass'\r"
        os.write(master, busy_loop.encode())
        first = wait_for(
            lambda: (
                (s := collector.session("fg"))
                and "foreground" in s["sources"]
                and [h["kind"] for h in s["held_by"]] == ["foreground"]
                and s
            ),
            what="foreground work",
        )
        assert first["last_source"] == "foreground"
        wait_for(
            lambda: (
                (s := collector.session("fg"))
                and s["sources"]["foreground"] > first["sources"]["foreground"]
            ),
            what="foreground work going on without any output",
        )

        os.write(master, b"\x03")  # ^C: back to the prompt
        read_until(master, b"READY> ")
        back = wait_for(lambda: (s := collector.session("fg")) and not s["held_by"] and s,
                        what="the foreground hold released at the prompt")  # fmt: skip
        time.sleep(1.0)
        still = collector.session("fg")
        assert still is not None
        assert still["sources"]["foreground"] == back["sources"]["foreground"]  # no more work
        os.write(master, b"exit 0\r")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)


def test_a_pager_or_repl_left_open_does_not_hold_but_a_silent_sleep_does(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    """Issue 10 (3): a foreground job waiting for the terminal (blocked reading it, no CPU)
    does not hold the session up; one that works silently (asleep elsewhere) does. The hold's
    reason says which."""

    def held() -> list[dict[str, object]]:
        s = collector.session("open")
        return [] if s is None else s["held_by"]

    env = {**lastactive_env, "LESS": ""}
    with shell_under_run(collector, env, "open", term="xterm") as (master, proc):
        os.write(master, b"sleep 600\r")
        # (A first check may catch bash between its fork and the exec of sleep.)
        (hold,) = wait_for(
            lambda: (h := held()) and h[0]["reason"] == "sleep (not reading the terminal)" and h,
            what="the silent sleep's hold",
        )
        assert hold["counts"]
        os.write(master, b"\x03")  # ^C
        read_until(master, b"READY> ")
        wait_for(lambda: not held(), what="released at the prompt")

        for command, name, shown in (
            (b"less /etc/passwd\r", "less", b"root"),
            (f"{sys.executable} -q -i\r".encode(), "python", b">>> "),
        ):
            os.write(master, command)
            read_until(master, shown)
            # A first check may catch it starting; once it sits reading the terminal it is
            # let go, and stays so check after check (every 0.3 s).
            wait_for(lambda: held() == [], what=f"{name} left open: not held")
            time.sleep(1.5)
            assert held() == [], name
            state = collector.session("open")
            assert state is not None and state["hibernate_at"] is not None, name
            os.write(master, b"q" if name == "less" else b"exit()\r")
            read_until(master, b"READY> ")
        os.write(master, b"exit 0\r")
        assert proc.wait(timeout=30) == 0
