"""tmux hooks that report attached clients as presence (seed 000, SSH option C).

``lastactive tmux`` prints (or, with ``--install``, sets on the running server) hooks for
``client-attached``, ``client-detached`` and ``client-session-changed``. Each runs
``lastactive tmux-event EVENT`` in the background, which reports which tmux sessions have
clients attached (a ``client`` hold, plus ``connection`` presence) and which no longer do.
A tmux session's lastactive session id is its ``LASTACTIVE_SESSION_ID`` tmux environment
variable (set when it runs under ``lastactive run``), else ``tmux:<session name>``.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final

from lastactive._spool import Spool
from lastactive.client import logs_request, post_logs
from lastactive.conventions import (
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_UNTIL,
    ATTR_HOST_ID,
    ATTR_HOST_NAME,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    ENV_SESSION_ID,
    EVENT_ACTIVITY,
    EVENT_HOLD,
    HoldKind,
    Source,
)
from lastactive.instrumentation._host import host_identity

_Event = tuple[str, Mapping[str, str | float], int]

HOOKS: Final = ("client-attached", "client-detached", "client-session-changed")


def hook_commands(lastactive: Sequence[str], url: str) -> list[list[str]]:
    """``tmux set-hook`` argument lists (without the ``tmux`` itself) for every hook.

    Raises:
        ValueError: the command or URL contains a single quote (it would break the hook).
    """
    base = " ".join(shlex.quote(a) for a in lastactive)
    out = []
    for hook in HOOKS:
        event = hook.removeprefix("client-")
        command = f"{base} tmux-event --url {shlex.quote(url)} {event}"
        if "'" in command:
            raise ValueError(f"cannot quote {command!r} for a tmux hook")
        out.append(["set-hook", "-g", hook, f"run-shell -b '{command}'"])
    return out


def tmux_conf(lastactive: Sequence[str], url: str) -> str:
    """The hooks as ``tmux.conf`` lines."""
    return "\n".join(f'{" ".join(cmd[:3])} "{cmd[3]}"' for cmd in hook_commands(lastactive, url))


def install_hooks(lastactive: Sequence[str], url: str, tmux: Sequence[str] = ("tmux",)) -> None:
    """Set the hooks on the running tmux server.

    Raises:
        subprocess.CalledProcessError: tmux refused (no server running, for one).
    """
    for cmd in hook_commands(lastactive, url):
        subprocess.run([*tmux, *cmd], check=True, capture_output=True, timeout=10)


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, timeout=5, check=False)
    return done.stdout if done.returncode == 0 else ""


def session_id_of(tmux_session: str) -> str:
    """The lastactive session id of a tmux session (see the module docstring)."""
    line = _tmux("show-environment", "-t", tmux_session, ENV_SESSION_ID).strip()
    if line.startswith(f"{ENV_SESSION_ID}="):
        return line.split("=", 1)[1]
    return f"tmux:{tmux_session}"


def tmux_event(
    event: str, url: str, timeout: float, clock: Callable[[], int] = time.time_ns
) -> None:
    """Report one hook firing as a snapshot of every tmux session: a session with clients
    attached (``#{session_attached}`` > 0) is held up by a ``client`` hold (id ``tmux``) and
    gets ``connection`` presence; one without has that hold released. A snapshot, because tmux
    no longer knows a detached client's tty, and a client that switched sessions leaves one.

    Raises:
        OSError: the collector cannot be reached.
    """
    now = clock()
    host_id, host_name = host_identity()
    resource = {ATTR_SERVICE_NAME: "tmux", ATTR_HOST_ID: host_id, ATTR_HOST_NAME: host_name}
    events: list[_Event] = []
    for line in _tmux("list-sessions", "-F", "#{session_attached} #{session_name}").splitlines():
        attached, _, name = line.partition(" ")
        if not name:
            continue
        sid = session_id_of(name)
        held = attached.isdigit() and int(attached) > 0
        hold = {
            ATTR_SESSION_ID: sid,
            ATTR_HOLD: str(HoldKind.CLIENT),
            ATTR_HOLD_ID: "tmux",
            ATTR_HOLD_UNTIL: 0 if held else now / 1e9,
        }
        events.append((EVENT_HOLD, hold, now))
        if held and event != "detached":
            events.append(
                (EVENT_ACTIVITY, {ATTR_SESSION_ID: sid, ATTR_SOURCE: str(Source.CONNECTION)}, now)
            )
    if events:
        post_logs(url, logs_request(resource, events), timeout, Spool())


def default_command() -> list[str]:
    """How the hooks call back into lastactive: this Python, so a venv need not be on PATH, with
    ``-P`` so that no ``lastactive/`` in the hook's working directory can shadow the installed
    package (``python -P``, Python 3.11+)."""
    return [sys.executable, "-P", "-m", "lastactive"]
