"""``lastactive lease``: a busy lease holds a session up while a silent child runs, is released
when the child exits or is killed, and expires by itself when the holder dies."""

from __future__ import annotations

import signal
import subprocess
import sys

import psutil

from tests.helpers import CollectorClient, wait_for


def lease(
    collector: CollectorClient, env: dict[str, str], ttl: str, sid: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "lastactive", "lease", "--ttl", ttl, "--session-id", sid,
         "--endpoint", f"http://{collector.grpc_target}", "--", "sleep", "60"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def held(collector: CollectorClient, sid: str) -> list[str]:
    s = collector.session(sid)
    return [] if s is None else [h["kind"] for h in s["held_by"]]


def test_lease_keeps_a_silent_job_busy_and_releases_when_it_is_killed(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    holder = lease(collector, lastactive_env, "3s", "job")
    try:
        # The hold (a log record) and the lease's work (a metric) come in separate exports.
        first = wait_for(
            lambda: (
                (s := collector.session("job"))
                and [h["kind"] for h in s["held_by"]] == ["lease"]
                and s["last_source"] == "lease"
                and s
            ),
            what="the lease, as hold and as work",
        )
        # Busy while the child is silent: each renewal is work, so it never goes idle.
        later = wait_for(
            lambda: (
                (s := collector.session("job"))
                and s["sources"]["lease"] > first["sources"]["lease"]
                and s
            ),
            what="renewals",
        )
        assert later["idle_seconds"] < 3
        (child,) = psutil.Process(holder.pid).children()
        child.send_signal(signal.SIGTERM)  # the job is killed: the lease ends with it
        assert holder.wait(timeout=20) == 128 + signal.SIGTERM
        wait_for(lambda: not held(collector, "job"), what="the lease released")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_signal_to_the_holder_goes_to_the_job(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    """SIGTERM to ``lastactive lease`` (say, from a supervisor) stops the job, then the lease.

    Whichever of the holder's threads the kernel hands the signal to, it is forwarded.
    """
    holder = lease(collector, lastactive_env, "30s", "stopped")
    try:
        wait_for(lambda: held(collector, "stopped") == ["lease"], what="the lease")
        (child,) = psutil.Process(holder.pid).children()
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(timeout=20) == 128 + signal.SIGTERM  # the job's status, passed on
        assert not child.is_running()
        wait_for(lambda: not held(collector, "stopped"), what="the lease released")
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_lease_expires_by_itself_when_the_holder_dies(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    holder = lease(collector, lastactive_env, "4s", "orphan")
    children = []
    try:
        wait_for(lambda: held(collector, "orphan") == ["lease"], what="the lease")
        children = psutil.Process(holder.pid).children()
        holder.kill()  # SIGKILL: no release is ever sent
        holder.wait()
        assert held(collector, "orphan") == ["lease"]  # the last renewal stands for 4 s
        wait_for(lambda: not held(collector, "orphan"), timeout=15, what="expiry after the ttl")
    finally:
        for c in children:
            c.kill()
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_lease_needs_a_session(lastactive_env: dict[str, str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lastactive", "lease", "--ttl", "1m", "--", "true"],
        env=lastactive_env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "LASTACTIVE_SESSION_ID" in done.stderr
