"""The installed package: exactly one top-level import package, ``lastactive``, with its data
files; ``lastactive --version`` from the wheel alone; and hooks that a working directory's own
``lastactive/`` cannot shadow."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import lastactive
from lastactive.instrumentation._tmux import default_command

ROOT = Path(__file__).parents[2]


def build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(
        ROOT, src, symlinks=True,
        ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "build", "*.egg-info"),
    )  # fmt: skip
    subprocess.run(
        # With build isolation: the build backend pyproject.toml asks for, not the venv's own
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(src)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("lastactive-*.whl")
    return wheel


def test_the_wheel_adds_only_lastactive_and_runs_from_it_alone(tmp_path: Path) -> None:
    wheel = build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {
        "lastactive",
        f"lastactive-{lastactive.__version__}.dist-info",
    }
    data = ("collector/proto/query.proto", "py.typed", "collector/py.typed",
            "instrumentation/py.typed", "_data/dashboards/alerts.yaml",
            "_data/dashboards/runaway.json", "_data/otel-config.yaml",
            "_data/packaging/systemd/lastactive.service", "_data/packaging/Dockerfile")  # fmt: skip
    assert [name for name in data if f"lastactive/{name}" not in names] == []
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
         str(wheel)],
        check=True, capture_output=True,
    )  # fmt: skip
    importable = [p.name for p in site.iterdir() if p.name not in ("bin",)]  # bin: the script
    assert sorted(n for n in importable if not n.endswith(".dist-info")) == ["lastactive"]
    # -S: no site-packages (not this checkout's editable install), -P: not the working directory
    alone = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    version = subprocess.run(
        [sys.executable, "-S", "-P", "-m", "lastactive", "--version"],
        env=alone, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert version.stdout.strip() == f"lastactive {lastactive.__version__}"
    written = subprocess.run(
        [sys.executable, "-S", "-P", "-m", "lastactive", "examples", str(tmp_path / "ex")],
        env=alone, cwd=tmp_path, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert len(written.stdout.splitlines()) >= 14
    shipped = ("dashboards/alerts.yaml", "dashboards/fleet.json", "otel-config.yaml",
               "packaging/systemd/lastactive-host@.service", "packaging/compose.yaml")  # fmt: skip
    for name in shipped:
        assert (tmp_path / "ex" / name).read_bytes() == (ROOT / name).read_bytes(), name
    for shadowable in ("collector", "instrumentation"):
        found = subprocess.run(
            [sys.executable, "-S", "-P", "-c", f"import {shadowable}"],
            env=alone, cwd=tmp_path, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert found.returncode == 1 and "ModuleNotFoundError" in found.stderr


def test_a_working_directory_with_its_own_lastactive_does_not_shadow_the_hooks(
    tmp_path: Path,
) -> None:
    impostor = tmp_path / "lastactive"
    impostor.mkdir()
    (impostor / "__init__.py").write_text("raise ImportError('the impostor was imported')\n")
    (impostor / "__main__.py").write_text("raise SystemExit('the impostor ran')\n")
    done = subprocess.run(
        [*default_command(), "--version"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"lastactive {lastactive.__version__}"
