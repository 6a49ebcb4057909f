"""Rebuild the generated code of ``query.proto``: ``python -m collector.proto``.

Needs the ``proto`` extra (``pip install -e '.[proto]'``); the output is committed, so users
and CI never run this.
"""

from pathlib import Path

from grpc_tools import protoc

root = Path(__file__).resolve().parents[2]
rc = protoc.main(
    [
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        str(root / "collector/proto/query.proto"),
    ]
)
raise SystemExit(rc)
