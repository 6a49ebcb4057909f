"""``lastactive run`` relay throughput next to util-linux ``script``, on the same output.

    python benchmarks/relay.py [--mib 256] [--repeat 3]

Both relay ``cat FILE`` through a pseudo-terminal to /dev/null with stdin not a terminal; the
wrapper reports to a real ``lastactive serve`` on loopback. Start-up (Python imports, the
exporter) is measured separately with ``true`` and subtracted, so the figure is the relay's.
Prints MiB/s and the ratio to ``script`` (the issue's bar: as fast as ``script``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _collector import start_collector


def best_wall(cmd: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        subprocess.run(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, check=True
        )
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("script") is None:
        sys.exit("util-linux `script` is needed (Debian: bsdutils)")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data.txt"
        line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:99] + b"\n"
        with data.open("wb") as f:
            block = line * (1 << 14)
            for _ in range(args.mib * (1 << 20) // len(block)):
                f.write(block)
        size = data.stat().st_size / (1 << 20)

        serve, endpoint = start_collector(Path(tmp) / "bench.db")
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        env["OTEL_EXPORTER_OTLP_ENDPOINT"] = endpoint
        try:
            run = [sys.executable, "-m", "lastactive", "run", "--"]
            script = ["script", "-q", "-e", "-c"]
            rows = []
            for name, cmd, startup_cmd in (
                (
                    "util-linux script (baseline)",
                    [*script, f"cat {data}", "/dev/null"],
                    [*script, "true", "/dev/null"],
                ),
                ("lastactive run", [*run, "cat", str(data)], [*run, "true"]),
            ):
                startup = best_wall(startup_cmd, env, args.repeat)
                wall = best_wall(cmd, env, args.repeat)
                rows.append((name, wall, startup, size / max(wall - startup, 1e-9)))
        finally:
            serve.terminate()
            serve.wait()
    base = rows[0][3]
    print(f"{size:.0f} MiB through a pty, best of {args.repeat}")
    print(f"{'relay':30} {'wall s':>7} {'start-up s':>10} {'MiB/s':>8} {'x script':>9}")
    for name, wall, startup, rate in rows:
        print(f"{name:30} {wall:7.2f} {startup:10.2f} {rate:8.1f} {rate / base:9.2f}")


if __name__ == "__main__":
    main()
