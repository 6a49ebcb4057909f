"""``lastactive examples DIR``: write out the deployment files the package carries: Grafana
dashboards and provisioning, Prometheus alert rules and scrape configuration, an OpenTelemetry
Collector configuration, systemd units, a container image definition, a compose file and an
HAProxy configuration for replicas."""

from __future__ import annotations

import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

__all__ = ["RUNBOOK", "examples", "examples_command"]

RUNBOOK: Final = "runbook_url: docs/runbook.md"
"""How alerts.yaml names its runbook: relative to where the docs are published."""


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        name = f"{prefix}{child.name}"
        if child.is_dir():
            out += _walk(child, f"{name}/")
        elif not child.name.endswith((".py", ".pyc", ".md")):
            out.append((name, child))
    return out


def examples() -> dict[str, bytes]:
    """Relative path -> content of every deployment file in the installed package."""
    return {name: node.read_bytes() for name, node in _walk(files("lastactive") / "_data")}


def examples_command(target: str, runbook_base: str | None, force: bool) -> int:
    """Write :func:`examples` under ``target``; with ``runbook_base`` (a URL where this
    repository's ``docs/`` are published, e.g. its repository's blob URL) the alerts'
    ``runbook_url`` are made absolute. Refuses to overwrite a file unless ``force``.

    Returns:
        0, or 1 when a file exists (nothing is written then).
    """
    out = Path(target)
    found = examples()
    if not force:
        clash = [name for name in found if (out / name).exists()]
        if clash:
            print(
                f"lastactive examples: {out / clash[0]} exists (and {len(clash) - 1} more); "
                "use --force to overwrite",
                file=sys.stderr,
            )
            return 1
    for name, content in found.items():
        text = content
        if runbook_base and name.endswith("alerts.yaml"):
            absolute = f"runbook_url: {runbook_base.rstrip('/')}/runbook.md"
            text = content.replace(RUNBOOK.encode(), absolute.encode())
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text)
        print(path)
    return 0
