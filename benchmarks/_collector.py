"""A real ``lastactive serve`` for benchmarks: started on free ports, stopped by the caller."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def start_serve(db: Path) -> tuple[subprocess.Popen[str], str, str]:
    """Start ``lastactive serve`` with its database at ``db``; return it, its OTLP/gRPC
    endpoint (``http://127.0.0.1:PORT``) and its HTTP URL."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "serve", "--grpc-port", "0", "--http-port", "0",
         "--db", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert serve.stdout is not None
    line = serve.stdout.readline()
    match = re.search(r"on 127\.0\.0\.1:(\d+).* on (http://127\.0\.0\.1:\d+)", line)
    assert match, line
    return serve, f"http://127.0.0.1:{match[1]}", match[2]


def start_collector(db: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``lastactive serve`` with its database at ``db``; return it and its OTLP/gRPC
    endpoint (``http://127.0.0.1:PORT``)."""
    serve, grpc_endpoint, _ = start_serve(db)
    return serve, grpc_endpoint
