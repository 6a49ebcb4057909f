"""What one ``lastactive hook claude`` call costs Claude Code (it runs twice per tool call).

    python benchmarks/hook.py [--runs 20]

Wall time of a whole hook process (start-up, imports, one OTLP/JSON POST, exit), median and
p90 over ``--runs``, next to its floor measured in the same run: the interpreter starting and
exiting (``python -c pass``) and the interpreter importing what any HTTP POST from Python
needs (``urllib.request``). Against a real ``lastactive serve`` (answers), a listener that
accepts and never answers (the hook gives up after ``LASTACTIVE_HOOK_TIMEOUT``, 0.5 s, and
keeps the event in its spool) and a closed port (refused at once, spooled).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _collector import start_serve  # benchmarks/_collector.py

PAYLOAD = json.dumps(
    {"session_id": "bench", "hook_event_name": "PreToolUse", "tool_name": "Bash",
     "tool_use_id": "toolu_01"}
).encode()  # fmt: skip


def timed(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    """Median and p90 wall seconds of ``argv`` with the hook payload on stdin."""
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(argv, input=PAYLOAD, env=env, check=True, capture_output=True)
        samples.append(time.perf_counter() - began)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.9) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    hook = [sys.executable, "-P", "-m", "lastactive", "hook", "claude"]
    # fmt: off
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "XDG_STATE_HOME": tmp}
        serve, _, http_url = start_serve(Path(tmp) / "state.db")
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(1024)  # accepts (the kernel does), never answers
        closed = socket.socket()
        closed.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
        try:
            silent_url = f"http://127.0.0.1:{silent.getsockname()[1]}"
            closed_url = f"http://127.0.0.1:{closed.getsockname()[1]}"
            rows = [
                ("python -c pass (floor)", [sys.executable, "-c", "pass"], env),
                ("python -c 'import urllib.request'",
                 [sys.executable, "-c", "import urllib.request"], env),
                ("hook, collector answers", hook, {**env, "LASTACTIVE_URL": http_url}),
                ("hook, collector silent", hook, {**env, "LASTACTIVE_URL": silent_url}),
                ("hook, collector down", hook, {**env, "LASTACTIVE_URL": closed_url}),
            ]
            # fmt: on
            print(f"{'':40s} {'median':>9s} {'p90':>9s}   ({args.runs} runs)")
            for name, argv, e in rows:
                median, p90 = timed(argv, e, args.runs)
                print(f"{name:40s} {median * 1000:7.1f}ms {p90 * 1000:7.1f}ms")
        finally:
            serve.terminate()
            serve.wait()
            silent.close()
            closed.close()


if __name__ == "__main__":
    main()
