"""``lastactive cull``: the reference idle-policy client (like jupyterhub-idle-culler).

Every interval it reads ``GET /v1/decisions``, and for each session or host due now runs an
action, at most ``concurrency`` at a time: a command template (``{kind}``, ``{id}``,
``{host_id}`` are replaced; no shell is involved) or an HTTP POST of the decision as JSON. It
logs every decision with its reason, records each hibernation back into lastactive as a
``hibernate`` lifecycle event (so the session shows ``hibernated`` until it is used again), and
never acts twice on the same deadline. ``--dry-run`` only logs.
"""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from lastactive._spool import Spool
from lastactive.client import get_json, logs_request, post_json, post_logs
from lastactive.conventions import (
    ATTR_HOST_ID,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    EVENT_ACTIVITY,
    Source,
)

_log = logging.getLogger("lastactive.cull")

Action = Callable[[dict[str, Any]], None]
"""Hibernates one decision's session or host; raises on failure."""


def command_action(template: str, timeout: float = 300.0) -> Action:
    """Run ``template`` with ``{kind}``, ``{id}``, ``{host_id}`` filled in (no shell).

    Raises (when called):
        subprocess.CalledProcessError: the command failed.
    """
    argv = shlex.split(template)

    def act(d: dict[str, Any]) -> None:
        fields = {"kind": d["kind"], "id": d["id"], "host_id": d["host_id"] or ""}
        subprocess.run([a.format(**fields) for a in argv], check=True, timeout=timeout)

    return act


def http_action(url: str, timeout: float = 30.0) -> Action:
    """POST the decision as JSON to ``url``; a non-2xx answer is a failure."""

    def act(d: dict[str, Any]) -> None:
        post_json(url, d, timeout)

    return act


class Culler:
    """One culler: remembers the deadlines it acted on (``(kind, id, hibernate_at)``)."""

    def __init__(
        self,
        url: str,
        action: Action | None,
        *,
        dry_run: bool = False,
        concurrency: int = 10,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        self.url = url.rstrip("/")
        self.action = action
        self.dry_run = dry_run
        self.concurrency = concurrency
        self.clock = clock
        self.acted: set[tuple[str, str, str]] = set()

    def decisions(self) -> list[dict[str, Any]]:
        """The sessions and hosts due now. Raises OSError when the collector is unreachable."""
        due: list[dict[str, Any]] = get_json(self.url, "/v1/decisions", {"within": "0"}, 30)[
            "hibernate"
        ]
        return due

    def once(self) -> list[tuple[dict[str, Any], str]]:
        """One round: act on what is due and not yet acted on. Returns ``(decision, outcome)``
        with outcome ``dry-run``, ``hibernated`` or ``failed: ...``."""
        todo = [
            d for d in self.decisions() if (d["kind"], d["id"], d["hibernate_at"]) not in self.acted
        ]
        with ThreadPoolExecutor(self.concurrency) as pool:
            outcomes = list(pool.map(self._one, todo))
        return list(zip(todo, outcomes, strict=True))

    def _one(self, d: dict[str, Any]) -> str:
        where = f" on host {d['host_id']}" if d["host_id"] and d["kind"] == "session" else ""
        what = f"{d['kind']} {d['id']}{where}: {d['reason']} (deadline {d['hibernate_at']})"
        if self.dry_run or self.action is None:
            _log.warning("would hibernate %s [dry run]", what)
            return "dry-run"
        try:
            self.action(d)
        except Exception as exc:
            _log.error("hibernating %s failed: %s", what, exc)
            return f"failed: {exc}"
        self.acted.add((d["kind"], d["id"], d["hibernate_at"]))
        _log.warning("hibernated %s", what)
        self._record(d)
        return "hibernated"

    def _record(self, d: dict[str, Any]) -> None:
        """Tell lastactive (a ``hibernate`` lifecycle event); logs when it cannot."""
        attrs: dict[str, str] = {ATTR_SOURCE: str(Source.HIBERNATE)}
        attrs[ATTR_SESSION_ID if d["kind"] == "session" else ATTR_HOST_ID] = d["id"]
        body = logs_request({ATTR_SERVICE_NAME: "lastactive-cull"},
                            [(EVENT_ACTIVITY, attrs, self.clock())])  # fmt: skip
        try:
            post_logs(self.url, body, timeout=10, spool=Spool(), credential="api")
        except OSError as exc:
            _log.error("recording the hibernation of %s %s failed: %s", d["kind"], d["id"], exc)

    def run(self, interval: float, stop: threading.Event) -> None:
        """Cull every ``interval`` seconds until ``stop`` is set; survives collector outages."""
        while not stop.is_set():
            try:
                self.once()
            except OSError as exc:
                _log.error("cannot read decisions from %s: %s", self.url, exc)
            stop.wait(interval)


def cull_command(
    url: str,
    *,
    command: str | None,
    http: str | None,
    dry_run: bool,
    concurrency: int,
    interval: float,
    once: bool,
) -> int:
    """``lastactive cull``: exit status 0, 1 (``--once`` and the collector is unreachable) or 2
    (no action given, a bad ``concurrency``). Runs until SIGTERM/SIGINT unless ``once``."""
    if not (command or http or dry_run):
        print("lastactive cull: give --command, --http or --dry-run", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    action = command_action(command) if command else http_action(http) if http else None
    try:
        culler = Culler(url, action, dry_run=dry_run, concurrency=concurrency)
    except ValueError as exc:
        print(f"lastactive cull: {exc}", file=sys.stderr)
        return 2
    if once:
        try:
            culler.once()
        except OSError as exc:
            print(f"lastactive cull: cannot reach the collector: {exc}", file=sys.stderr)
            return 1
        return 0
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    culler.run(interval, stop)
    return 0
