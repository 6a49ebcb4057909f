"""A long fuzz run of every input a client controls (``tests/collector/test_fuzz.py`` with many
more examples): OTLP/JSON and protobuf over HTTP and gRPC, the agent webhook, the policy
loader. Never a 5xx or UNKNOWN, state intact, a restart clean.

    python benchmarks/fuzz.py [--examples 5000]

Prints pytest's summary (and hypothesis's statistics); exits non-zero on a finding, with the
failing input shrunk.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=5000, help="examples per input")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "LASTACTIVE_FUZZ_EXAMPLES": str(args.examples)}
    return subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "ignore",
         "--hypothesis-show-statistics", str(root / "tests" / "collector" / "test_fuzz.py")],
        cwd=root, env=env,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
