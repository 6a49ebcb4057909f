"""Rebuild the generated code of ``query.proto``: ``python -m lastactive.collector.proto``.

Needs the ``proto`` extra (``pip install -e '.[proto]'``); the output is committed, so users
and CI never run this. The file is compiled as ``lastactive/collector/proto/query.proto`` from
the repository root, so the generated modules import each other as ``lastactive.collector...``.
"""

from pathlib import Path

from grpc_tools import protoc

root = Path(__file__).parents[3]  # <repo>/lastactive/collector/proto/__main__.py -> <repo>
rc = protoc.main(
    [
        "grpc_tools.protoc",
        f"-I{root}",
        f"--python_out={root}",
        f"--pyi_out={root}",
        f"--grpc_python_out={root}",
        str(root / "lastactive/collector/proto/query.proto"),
    ]
)
raise SystemExit(rc)
