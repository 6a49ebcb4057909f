"""Proxy relay throughput: instrumented vs the same relay uninstrumented vs socat, one run.

    python benchmarks/proxy.py [--mib 200] [--repeat 3]

A server sends MiB of data to each client that connects (the server -> client direction
carries a VNC session's bulk); a client reads it all through a relay in its own process:
socat (Debian), lastactive's asyncio relay with no-op hooks (uninstrumented), and
``lastactive proxy --protocol rfb`` reporting to a real ``lastactive serve``. The issue's bar:
instrumented >= 90 % of uninstrumented.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _collector import start_collector

BLAST = """
import socket, sys
size = int(sys.argv[2]) * (1 << 20)
chunk = b"x" * (1 << 20)
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", int(sys.argv[1]))); srv.listen(16)
while True:
    conn, _ = srv.accept()
    sent = 0
    try:
        while sent < size:
            conn.sendall(chunk); sent += len(chunk)
    except OSError:
        pass  # a probe that hung up
    conn.close()
"""


class _Null:
    """Hooks that do nothing: the relay without instrumentation."""

    heartbeat_interval = 5.0

    def connect(self, peer: str) -> _Null:
        return self

    def client_data(self, data: bytes) -> None:
        pass

    def server_data(self, data: bytes) -> None:
        pass

    def close(self, reason: str) -> None:
        pass

    def heartbeat(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def fetch(port: int) -> tuple[int, float]:
    began = time.perf_counter()
    total = 0
    buf = bytearray(1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as s:
        while n := s.recv_into(buf):
            total += n
    return total, time.perf_counter() - began


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--null-relay":  # the uninstrumented relay process
        from lastactive.instrumentation._proxy_relay import serve_proxy

        listen, target = int(sys.argv[2]), int(sys.argv[3])
        asyncio.run(
            serve_proxy(
                ("127.0.0.1", listen),
                ("127.0.0.1", target),
                _Null(),  # type: ignore[arg-type]
            )
        )
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if shutil.which("socat") is None:
        sys.exit("socat is needed (Debian: socat)")
    procs = []
    try:
        source = free_port()
        procs.append(subprocess.Popen([sys.executable, "-c", BLAST, str(source), str(args.mib)]))
        serve, endpoint = start_collector(Path(tempfile.mkdtemp()) / "b.db")
        procs.append(serve)
        relays = {}
        port = free_port()
        procs.append(
            subprocess.Popen(
                ["socat", f"TCP-LISTEN:{port},reuseaddr,fork", f"TCP:127.0.0.1:{source}"]
            )
        )
        relays["socat (Debian)"] = port
        port = free_port()
        here = str(Path(__file__).resolve())
        procs.append(
            subprocess.Popen(
                [sys.executable, here, "--null-relay", str(port), str(source)],
                env={**os.environ, "PYTHONPATH": str(Path.cwd())},
            )
        )
        relays["asyncio relay, uninstrumented"] = port
        port = free_port()
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "lastactive",
                    "proxy",
                    "--listen",
                    f"127.0.0.1:{port}",
                    "--target",
                    f"127.0.0.1:{source}",
                    "--protocol",
                    "rfb",
                    "--session-id",
                    "bench",
                    "--endpoint",
                    endpoint,
                ],
                stdout=subprocess.DEVNULL,
            )
        )
        relays["lastactive proxy --protocol rfb"] = port
        for p in (source, *relays.values()):
            wait_port(p)
        rows = [("direct (no relay)", source), *relays.items()]
        results = {}
        for name, p in rows:
            best = min(fetch(p)[1] for _ in range(args.repeat))
            results[name] = args.mib / best
        base = results["asyncio relay, uninstrumented"]
        print(f"{args.mib} MiB server -> client, best of {args.repeat}")
        print(f"{'path':36} {'MiB/s':>8} {'x uninstrumented':>17}")
        for name, rate in results.items():
            print(f"{name:36} {rate:8.0f} {rate / base:17.2f}")
    finally:
        for p in procs:
            p.terminate()
            p.wait()


if __name__ == "__main__":
    main()
