"""The host's identity, shared by every reporter (and the hooks, which must start fast)."""

from __future__ import annotations

import socket
from pathlib import Path


def host_identity(host_id: str | None = None, host_name: str | None = None) -> tuple[str, str]:
    """``(host.id, host.name)``: the machine id (semconv's choice for ``host.id``) or the host
    name, and :func:`socket.gethostname`; explicit values win."""
    name = host_name or socket.gethostname()
    return host_id or machine_id() or name, name


def machine_id() -> str | None:
    """``/etc/machine-id`` (systemd), the identity semconv suggests for ``host.id``."""
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if value:
            return value
    return None
