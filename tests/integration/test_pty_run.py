"""``lastactive run`` as a real process, in real pseudo-terminals."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import signal
import struct
import subprocess
import termios
from concurrent.futures import ThreadPoolExecutor

from tests.helpers import RUN, CollectorClient, read_until, wait_for


def down_env(env: dict[str, str]) -> dict[str, str]:
    """No collector listening: the wrapper must still run the program and pass its status."""
    return {**env, "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}


def test_exit_status_passes_through_with_the_collector_down(
    lastactive_env: dict[str, str],
) -> None:
    env = down_env(lastactive_env)
    cases = {
        "exit 5": 5,
        "exit 0": 0,
        "kill -TERM $$": 128 + signal.SIGTERM,
    }
    for script, code in cases.items():
        done = subprocess.run(
            [*RUN, "--", "sh", "-c", script],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            env=env,
            timeout=60,
        )
        assert done.returncode == code, (script, done.stderr)
    missing = subprocess.run(
        [*RUN, "--", "no-such-program-xyz"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        env=env,
        timeout=60,
    )
    assert missing.returncode == 127
    assert b"no-such-program-xyz" in missing.stdout  # reported through the terminal


def test_the_program_gets_the_signal_dispositions_it_would_get_without_the_wrapper(
    lastactive_env: dict[str, str],
) -> None:
    """CPython ignores SIGPIPE and SIGXFSZ at start-up; a program run under the wrapper must not
    inherit that (``yes | head -1`` would print "Broken pipe"). What the wrapper's launcher
    ignored (here SIGINT and SIGQUIT, as a shell does for a background job) stays ignored."""
    show = ["sh", "-c", "grep SigIgn /proc/self/status; yes | head -1"]
    launcher = ["env", "--ignore-signal=INT,QUIT"]  # coreutils >= 8.31
    direct, wrapped = (
        subprocess.run(
            [*launcher, *argv],
            env=down_env(lastactive_env),
            text=True,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=True,
        )
        for argv in (show, [*RUN, "--", *show])
    )
    assert direct.stdout == "SigIgn:\t0000000000000006\ny\n"  # INT (bit 1) and QUIT (bit 2)
    assert wrapped.stdout.replace("\r\n", "\n") == direct.stdout
    assert "Broken pipe" not in wrapped.stdout + wrapped.stderr


def test_stdin_not_a_tty_is_relayed_without_echo_and_counted(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    done = subprocess.run(
        [
            *RUN,
            "--session-id",
            "pipe",
            "--endpoint",
            f"http://{collector.grpc_target}",
            "--",
            "sh",
            "-c",
            "read a; read b; echo got:$a:$b",
        ],
        input=b"one\ntwo\n",
        capture_output=True,
        check=False,
        env=lastactive_env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.replace(b"\r\n", b"\n") == b"got:one:two\n"  # no echo of the input
    s = wait_for(
        lambda: (s := collector.session("pipe")) and s["process"]["exit_code"] == 0 and s,
        what="session exit",
    )
    assert s["input_bytes"] == 8
    assert s["output_bytes"] == len(done.stdout)
    assert s["last_active"] is not None  # input is engagement


def test_eof_on_stdin_ends_a_reading_program(lastactive_env: dict[str, str]) -> None:
    done = subprocess.run(
        [*RUN, "--", "cat"],
        input=b"abc",
        capture_output=True,
        check=False,
        env=down_env(lastactive_env),
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout == b"abc"


def test_a_program_that_closes_its_terminal_before_exiting_is_not_hung_up(
    lastactive_env: dict[str, str],
) -> None:
    """Issue 10 (9): ``printf abc | lastactive run -- cat`` exited 129 (SIGHUP) in 4 of 40 runs
    on a loaded machine: cat closes its stdio, the wrapper saw the terminal closed and hung it
    up before cat had exited. Here a program lingers after closing it (the race made certain),
    then cat with piped input runs many times, several at once."""
    lingering = "cat; exec 0<&- 1>&- 2>&-; sleep 0.3; exit 0"

    def once(argv: list[str]) -> tuple[int, bytes]:
        done = subprocess.run(
            [*RUN, "--", *argv], input=b"abc", capture_output=True, check=False,
            env=down_env(lastactive_env), timeout=60,
        )  # fmt: skip
        return done.returncode, done.stdout

    assert once(["sh", "-c", lingering]) == (0, b"abc")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(once, [["cat"]] * 24))
    assert results == [(0, b"abc")] * 24


def set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def test_terminal_raw_mode_window_size_and_sigwinch(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    master, slave = pty.openpty()
    set_winsize(master, 33, 111)
    before = termios.tcgetattr(slave)
    # Each step waits for a keypress, so the resize below lands before the second `stty size`.
    script = "stty size; read x; echo got:$x; read z; stty size; read y"
    proc = subprocess.Popen(
        [
            *RUN,
            "--session-id",
            "tty",
            "--endpoint",
            f"http://{collector.grpc_target}",
            "--",
            "sh",
            "-c",
            script,
        ],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=lastactive_env,
        start_new_session=True,
    )
    try:
        out = read_until(master, b"33 111")
        os.write(master, b"hi\r")
        out += read_until(master, b"got:hi")
        # Raw mode outside: only the inner terminal echoes, so "hi" shows twice, not three times.
        assert out.count(b"hi") == 2, out
        set_winsize(master, 40, 120)
        os.kill(proc.pid, signal.SIGWINCH)  # what the kernel sends the outer session's leader
        os.write(master, b"\r")
        out += read_until(master, b"40 120")
        os.write(master, b"\r")
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert termios.tcgetattr(slave) == before  # the terminal is restored
    os.close(master)
    os.close(slave)
    s = wait_for(
        lambda: (s := collector.session("tty")) and s["process"]["status"] == "exited" and s,
        what="tty session exit",
    )
    assert s["input_bytes"] == 5  # "hi\r" + "\r" + "\r": the user's keystrokes
    assert s["last_source"] == "exit"
    assert s["last_active"] is not None


def test_signals_to_the_wrapper_go_to_the_program_and_the_terminal_is_restored(
    lastactive_env: dict[str, str],
) -> None:
    env = down_env(lastactive_env)
    programs = {
        "echo ready; exec sleep 30": 128 + signal.SIGTERM,  # default action: killed
        'trap "exit 9" TERM; echo ready; while :; do sleep 0.1; done': 9,  # it decides
    }
    for program, code in programs.items():
        master, slave = pty.openpty()
        before = termios.tcgetattr(slave)
        proc = subprocess.Popen(
            [*RUN, "--", "sh", "-c", program],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        try:
            read_until(master, b"ready")
            assert termios.tcgetattr(slave) != before  # raw while relaying
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == code
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert termios.tcgetattr(slave) == before
        os.close(master)
        os.close(slave)


_RUN_IN_MEMORY = """
import io, json, sys
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from lastactive.instrumentation import Reporter
from lastactive.instrumentation._pty_run import run

logs = InMemoryLogRecordExporter()
reporter = Reporter(export_interval=3600, endpoint="http://127.0.0.1:9", log_exporter=logs,
                    metric_exporter=ConsoleMetricExporter(out=io.StringIO()))
code = run(sys.argv[2:], session_id="s", make_reporter=lambda: reporter,
           command_args=sys.argv[1] == "args")
starts = [dict(r.log_record.attributes) for r in logs.get_finished_logs()
          if r.log_record.attributes.get("lastactive.source") == "start"]
sys.stderr.write(json.dumps([{k: list(v) if isinstance(v, tuple) else v
                              for k, v in a.items()} for a in starts]))
sys.exit(code)
"""


def test_the_start_event_names_the_program_and_its_arguments_only_when_asked(
    lastactive_env: dict[str, str],
) -> None:
    """Semantic conventions: ``process.command`` is the program, ``process.command_args`` its
    arguments, opt-in (``--command-args``): a secret on the command line stays on the host."""
    argv = ["sh", "-c", "exit 3", "--password=hunter2"]
    seen = {}
    for mode in ("plain", "args"):
        done = subprocess.run(
            [RUN[0], "-c", _RUN_IN_MEMORY, mode, *argv],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
            env=lastactive_env,
            timeout=60,
        )
        assert done.returncode == 3, done.stderr
        seen[mode] = json.loads(done.stderr.decode().strip().splitlines()[-1])
    [plain], [args] = seen["plain"], seen["args"]
    assert plain["process.command"] == "sh" and "process.command_args" not in plain
    assert "hunter2" not in json.dumps(plain)
    assert args["process.command"] == "sh" and args["process.command_args"] == argv
