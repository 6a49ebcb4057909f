r"""``lastactive cull``: the reference idle-policy client (like jupyterhub-idle-culler).

Every interval it reads ``GET /v1/decisions``, and for each session or host due now runs an
action, at most ``concurrency`` at a time: a command template or an HTTP POST of the decision as
JSON. It logs every decision with its reason, records each hibernation back into lastactive as a
``hibernate`` lifecycle event (so the session shows ``hibernated`` until it is used again), and
never acts twice on the same deadline. ``--dry-run`` only logs.

A command template is split like a shell would split it, once, at start; ``{kind}``, ``{id}``
and ``{host_id}`` are then filled into the arguments they appear in, each value staying inside
its one argument, and the command runs with no shell. So:

* ``virsh suspend {host_id}``, ``systemctl stop lastactive-{id}.service``,
  ``sh -c 'suspend-session "$1"' sh {id}`` are safe forms;
* a placeholder inside a shell's ``-c`` script (``sh -c "suspend {id}"``; also python ``-c``,
  perl, ruby and node ``-e``) or in the program's name is refused at start: the value would
  be code;
* a value that is empty, starts with ``-`` (an option), contains ``/`` or ``\`` or is ``.``
  or ``..`` (a path), or holds a control character is refused for that decision;
* a session's decision runs a template naming ``{host_id}`` only when that host's own decision
  is to hibernate too (in the same round): a session being idle says nothing of the other
  sessions on its host (as Coder and JupyterHub cull a workspace or server by its own activity).
"""

from __future__ import annotations

import logging
import re
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


_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "busybox"})
_CODE_FLAGS = {
    **dict.fromkeys(_SHELLS, "-c"),
    **dict.fromkeys(("python", "python3"), "-c"),
    **dict.fromkeys(("perl", "ruby", "node"), "-e"),
}
"""Interpreters and the flag whose argument is a script (a placeholder there is code)."""
_UNSAFE_ID = re.compile(r"[/\\\x00-\x1f\x7f]")
_PLACEHOLDER = re.compile(r"\{(kind|id|host_id)\}")


class UnsafeValueError(ValueError):
    """An id that looks like an option or a path, or holds a control character."""


def safe_value(name: str, value: str) -> str:
    """``value`` when it may be substituted into a command argument (module docstring).

    Raises:
        UnsafeValueError: it may not.
    """
    if not value or value.startswith("-") or value in (".", "..") or _UNSAFE_ID.search(value):
        raise UnsafeValueError(
            f"refusing {name}={value!r} in a command: empty, an option (-...), a path "
            f"(/, \\, ., ..) or a control character"
        )
    return value


class CommandAction:
    """Runs a command template per decision (module docstring): ``{kind}``, ``{id}`` and
    ``{host_id}`` filled in, no shell, at most ``timeout`` seconds.

    Raises:
        ValueError: at construction, a template that does not split, is empty, or has a
            placeholder in the program name or a shell's ``-c`` script.
        UnsafeValueError, subprocess.CalledProcessError (when called): a refused value; the
            command failed.
    """

    def __init__(self, template: str, timeout: float = 300.0) -> None:
        self.argv = shlex.split(template)
        if not self.argv:
            raise ValueError("the command template is empty")
        if _PLACEHOLDER.search(self.argv[0]):
            raise ValueError(f"a placeholder in the program name {self.argv[0]!r} is refused")
        program = self.argv[0].rsplit("/", 1)[-1]
        flag = _CODE_FLAGS.get(program)
        if flag in self.argv:
            script = self.argv[self.argv.index(flag) + 1 : self.argv.index(flag) + 2]
            if script and _PLACEHOLDER.search(script[0]):
                raise ValueError(
                    f"a placeholder inside a {program} script ({script[0]!r}) would run as "
                    f"code; pass it as an argument: sh -c '... \"$1\"' sh {{id}}"
                )
        self.names_host = any("{host_id}" in a for a in self.argv)
        self.timeout = timeout

    def __call__(self, d: dict[str, Any]) -> None:
        host = d["id"] if d["kind"] == "host" else d["host_id"] or ""
        fields = {"kind": d["kind"], "id": d["id"], "host_id": host}
        used = {m for a in self.argv for m in _PLACEHOLDER.findall(a)}
        for name in used:
            safe_value(name, fields[name])
        argv = [_PLACEHOLDER.sub(lambda m: fields[m[1]], a) for a in self.argv]
        subprocess.run(argv, check=True, timeout=self.timeout)


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
        due = self.decisions()
        hosts_due = {d["id"] for d in due if d["kind"] == "host"}
        todo = [d for d in due if (d["kind"], d["id"], d["hibernate_at"]) not in self.acted]
        with ThreadPoolExecutor(self.concurrency) as pool:
            outcomes = list(pool.map(lambda d: self._one(d, hosts_due), todo))
        return list(zip(todo, outcomes, strict=True))

    def _one(self, d: dict[str, Any], hosts_due: set[str]) -> str:
        where = f" on host {d['host_id']}" if d["host_id"] and d["kind"] == "session" else ""
        what = f"{d['kind']} {d['id']}{where}: {d['reason']} (deadline {d['hibernate_at']})"
        if (
            getattr(self.action, "names_host", False)
            and d["kind"] == "session"
            and d["host_id"] not in hosts_due
        ):
            _log.error(
                "not hibernating %s: the command names host %r, whose own decision is not to "
                "hibernate (its other sessions may be in use)", what, d["host_id"],
            )  # fmt: skip
            return "refused: the host's own decision is not to hibernate"
        if self.dry_run or self.action is None:
            _log.warning("would hibernate %s [dry run]", what)
            return "dry-run"
        try:
            self.action(d)
        except UnsafeValueError as exc:
            _log.error("not hibernating %s: %s", what, exc)
            return f"refused: {exc}"
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
    try:
        action = CommandAction(command) if command else http_action(http) if http else None
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
