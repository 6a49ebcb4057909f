"""``lastactive hook claude``: Claude Code hook events as lastactive activity (seed 002).

Claude Code runs the hook command with the event's JSON on stdin (``session_id``,
``hook_event_name`` and per-event fields). The hook must never slow or break Claude Code: it
reads stdin, sends one OTLP/JSON request with a short timeout, prints nothing on stdout and
always exits 0. Failures go to ``LASTACTIVE_LOG_FILE`` when set, nowhere otherwise.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Final

from lastactive._spool import Spool
from lastactive.client import logs_request, post_logs
from lastactive.conventions import (
    ATTR_AGENT_TURN,
    ATTR_GEN_AI_AGENT_NAME,
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_UNTIL,
    ATTR_HOST_ID,
    ATTR_HOST_NAME,
    ATTR_RESULT,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    EVENT_ACTIVITY,
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_SPAWN,
    EVENT_HOLD,
    AgentTurn,
    HoldKind,
    Source,
)
from lastactive.instrumentation._host import host_identity

_log = logging.getLogger(__name__)

AGENT_NAME: Final = "claude-code"

_WORKING: Final = str(AgentTurn.WORKING)
_WAITING: Final = str(AgentTurn.WAITING)

EVENTS: Final[dict[str, tuple[str, Source | None, str | None]]] = {
    # hook_event_name: (our event, the source it counts as, the agent's turn after it)
    "SessionStart": (EVENT_AGENT_SPAWN, None, _WAITING),  # started or resumed: awaits a prompt
    "UserPromptSubmit": (EVENT_ACTIVITY, Source.PROMPT, _WORKING),  # engagement: last_active
    "PreToolUse": (EVENT_ACTIVITY, Source.AGENT, _WORKING),  # the agent works; a tool starts
    "PostToolUse": (EVENT_ACTIVITY, Source.AGENT, _WORKING),  # ... and ends
    "PostToolUseFailure": (EVENT_ACTIVITY, Source.AGENT, _WORKING),
    "PermissionRequest": (EVENT_ACTIVITY, Source.HEARTBEAT, None),  # asks: the tool holds on
    "SubagentStart": (EVENT_ACTIVITY, Source.AGENT, _WORKING),
    "SubagentStop": (EVENT_ACTIVITY, Source.AGENT, None),  # the main agent carries on
    "PreCompact": (EVENT_ACTIVITY, Source.AGENT, None),
    "Stop": (EVENT_ACTIVITY, Source.AGENT, _WAITING),  # answered: work, then the user's turn
    "Notification": (EVENT_ACTIVITY, Source.HEARTBEAT, None),  # waiting on the user: liveness
    "SessionEnd": (EVENT_AGENT_COMPLETE, None, None),  # stopped; keeps its last_active (seed 002)
}
"""How each Claude Code hook event counts. A permission prompt *appearing* (Notification,
PermissionRequest) is not the user engaging (seed 002, design option 2), so only
UserPromptSubmit moves ``last_active``. ``Stop`` hands the turn to the user: the session can go
idle, and is never stuck while it waits. A permission request leaves the tool call's hold
standing: the tool may run long once approved (at most the policy's ``tool_call_max``)."""

_TOOL_START: Final = "PreToolUse"
_TOOL_ENDS: Final = frozenset({"PostToolUse", "PostToolUseFailure"})

Event = tuple[str, dict[str, str | float]]


def _tool_hold(payload: dict[str, Any], until: float) -> Event | None:
    """The ``tool`` hold of the call ``payload`` is about (id ``tool_name/tool_use_id``)."""
    tool, call = payload.get("tool_name"), payload.get("tool_use_id")
    if not tool and not call:
        return None
    hold_id = "/".join(str(x) for x in (tool, call) if x)
    return EVENT_HOLD, {
        ATTR_HOLD: str(HoldKind.TOOL),
        ATTR_HOLD_ID: hold_id,
        ATTR_HOLD_UNTIL: until,
    }


def events_for(payload: dict[str, Any], now_s: float) -> list[Event]:
    """Our ``(event name, attributes)`` for one hook payload (empty: send nothing). A tool
    call's start is also a ``tool`` hold until released; its end (success or failure) releases
    it at ``now_s`` (seconds since the epoch)."""
    session_id = payload.get("session_id")
    hook = str(payload.get("hook_event_name"))
    mapped = EVENTS.get(hook)
    if not isinstance(session_id, str) or not session_id or mapped is None:
        return []
    name, source, turn = mapped
    attrs: dict[str, str | float] = {}
    if source is not None:
        attrs[ATTR_SOURCE] = str(source)
    if turn is not None:
        attrs[ATTR_AGENT_TURN] = turn
    if name == EVENT_AGENT_COMPLETE and payload.get("reason"):
        attrs[ATTR_RESULT] = str(payload["reason"])
    out: list[Event] = [(name, attrs)]
    if hook == _TOOL_START or hook in _TOOL_ENDS:
        hold = _tool_hold(payload, 0.0 if hook == _TOOL_START else now_s)
        if hold is not None:
            out.append(hold)
    identity = {ATTR_SESSION_ID: session_id, ATTR_GEN_AI_AGENT_NAME: AGENT_NAME}
    return [(n, {**identity, **a}) for n, a in out]


def hook_claude(
    stdin: bytes, url: str, timeout: float, clock: Callable[[], int] = time.time_ns
) -> None:
    """Translate and send one hook payload. Never raises: logs what went wrong."""
    try:
        payload = json.loads(stdin)
        t = clock()
        found = events_for(payload, t / 1e9) if isinstance(payload, dict) else []
        if not found:
            _log.info("ignoring hook input without a session_id or known hook_event_name")
            return
        host_id, host_name = host_identity()
        resource = {
            ATTR_SERVICE_NAME: AGENT_NAME,
            ATTR_HOST_ID: host_id,
            ATTR_HOST_NAME: host_name,
        }
        post_logs(url, logs_request(resource, [(n, a, t) for n, a in found]), timeout, Spool())
    except Exception:
        _log.exception("lastactive hook claude: not reported")
