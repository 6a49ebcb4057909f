"""A real ``lastactive serve`` for benchmarks: started on free ports, stopped by the caller."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def start_collector(db: Path) -> tuple[subprocess.Popen[str], str]:
    """Start ``lastactive serve`` with its database at ``db``; return it and its OTLP/gRPC
    endpoint (``http://127.0.0.1:PORT``)."""
    serve = subprocess.Popen(
        [sys.executable, "-m", "lastactive", "serve", "--grpc-port", "0", "--http-port", "0",
         "--db", str(db)],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert serve.stdout is not None
    grpc_port = serve.stdout.readline().split("on 127.0.0.1:")[1].split(",")[0]
    return serve, f"http://127.0.0.1:{grpc_port}"
