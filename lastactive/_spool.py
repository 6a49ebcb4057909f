"""A small bounded spool for the short-lived reporters (``hook claude``, ``tmux-event``, the
cull's hibernation records): what they could not deliver while the collector was down is kept
in the user's state directory and delivered by the next invocation (issue 11).

Standard library only (the hooks import it on every event). Each undelivered OTLP/JSON logs
request is one file ``<ns>-<pid>.json`` in ``$XDG_STATE_HOME/lastactive/spool/`` (default
``~/.local/state/...``), written atomically. At most :data:`MAX_FILES` files and
:data:`MAX_BYTES` bytes are kept: past either, the oldest are dropped (and the drop logged), so
an outage can never fill a disk. Delivery claims a file by renaming it, so two invocations
never send the same one, and stamps each record's ``observedTimeUnixNano`` with the delivery
time: the events keep their own times, and the collector's clock-offset estimate (which reads
the observed time as the reporter's "now") is not misled by the delay.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

__all__ = ["MAX_BYTES", "MAX_FILES", "STALE_CLAIM_S", "Spool", "default_spool_dir"]

_log = logging.getLogger(__name__)

MAX_FILES: Final = 256
"""Undelivered requests kept at most."""
MAX_BYTES: Final = 1024 * 1024
"""Bytes of undelivered requests kept at most."""
STALE_CLAIM_S: Final = 60.0
"""Seconds after which a claimed, never finished delivery is pending again."""


def default_spool_dir() -> Path:
    """``$XDG_STATE_HOME/lastactive/spool``, default ``~/.local/state/lastactive/spool``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lastactive" / "spool"


class Spool:
    """Undelivered OTLP/JSON logs requests in ``directory`` (created on first use);
    ``clock`` is seconds since the epoch (file ages)."""

    def __init__(
        self, directory: Path | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.directory = directory if directory is not None else default_spool_dir()
        self._clock = clock

    def keep(self, body: dict[str, Any]) -> None:
        """Keep ``body`` for a later delivery; never raises (logs when it cannot)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            name = f"{time.time_ns():020d}-{os.getpid()}.json"
            tmp = self.directory / f".{name}.tmp"
            tmp.write_text(json.dumps(body, separators=(",", ":")))
            tmp.rename(self.directory / name)
            self._bound()
        except OSError as exc:
            _log.error("lastactive: cannot spool an undelivered report: %s", exc)

    def pending(self) -> list[Path]:
        """Spooled requests, oldest first; a claim older than :data:`STALE_CLAIM_S` (its
        sender was killed mid-delivery, as a hook past its time limit is) is pending again."""
        try:
            now = self._clock()
            for claimed in self.directory.glob(".*.sending"):
                if now - claimed.stat().st_ctime > STALE_CLAIM_S:
                    original = claimed.name[1:].rsplit(".", 2)[0]
                    claimed.rename(claimed.with_name(original))
            return sorted(self.directory.glob("*.json"))
        except OSError:
            return []

    def deliver(self, send: Callable[[dict[str, Any]], None], deadline: float) -> int:
        """Send spooled requests, oldest first, until one fails, none is left, or
        ``time.monotonic()`` passes ``deadline``. ``send`` raises ``OSError`` when the
        collector cannot take one (it stays spooled). Returns how many were delivered."""
        delivered = 0
        for path in self.pending():
            if time.monotonic() >= deadline:
                break
            claimed = path.with_name(f".{path.name}.{os.getpid()}.sending")
            try:
                path.rename(claimed)  # another invocation may have claimed it first
            except OSError:
                continue
            try:
                body = json.loads(claimed.read_text())
                _observed_now(body)
            except (OSError, ValueError) as exc:
                _log.error("lastactive: dropping unreadable spooled report %s: %s", path, exc)
                claimed.unlink(missing_ok=True)
                continue
            try:
                send(body)
            except OSError:
                with contextlib.suppress(OSError):
                    claimed.rename(path)
                break
            claimed.unlink(missing_ok=True)
            delivered += 1
        return delivered

    def _bound(self) -> None:
        files = self.pending()
        sizes = []
        for f in files:
            try:
                sizes.append(f.stat().st_size)
            except OSError:
                sizes.append(0)
        total = sum(sizes)
        drop = 0
        while drop < len(files) and (len(files) - drop > MAX_FILES or total > MAX_BYTES):
            total -= sizes[drop]
            drop += 1
        if drop:
            _log.warning("lastactive: spool full, dropping the %d oldest undelivered reports", drop)
            for f in files[:drop]:
                f.unlink(missing_ok=True)


def _observed_now(body: dict[str, Any]) -> None:
    now = str(time.time_ns())
    for rl in body.get("resourceLogs", []):
        for sl in rl.get("scopeLogs", []):
            for record in sl.get("logRecords", []):
                record["observedTimeUnixNano"] = now
