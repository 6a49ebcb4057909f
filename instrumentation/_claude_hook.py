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

from lastactive.client import logs_request, post_logs
from lastactive.conventions import (
    ATTR_GEN_AI_AGENT_NAME,
    ATTR_HOST_ID,
    ATTR_HOST_NAME,
    ATTR_RESULT,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    EVENT_ACTIVITY,
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_SPAWN,
    Source,
)
from lastactive.instrumentation._host import host_identity

_log = logging.getLogger(__name__)

AGENT_NAME: Final = "claude-code"

EVENTS: Final[dict[str, tuple[str, Source | None]]] = {
    # hook_event_name: (our event, the source it counts as)
    "SessionStart": (EVENT_AGENT_SPAWN, None),  # lifecycle: active again (startup, resume)
    "UserPromptSubmit": (EVENT_ACTIVITY, Source.PROMPT),  # engagement: moves last_active
    "PreToolUse": (EVENT_ACTIVITY, Source.AGENT),  # the agent works
    "PostToolUse": (EVENT_ACTIVITY, Source.AGENT),
    "Stop": (EVENT_ACTIVITY, Source.AGENT),  # finished answering: work, not engagement
    "SubagentStop": (EVENT_ACTIVITY, Source.AGENT),
    "Notification": (EVENT_ACTIVITY, Source.HEARTBEAT),  # waiting on the user: liveness only
    "PreCompact": (EVENT_ACTIVITY, Source.AGENT),
    "SessionEnd": (EVENT_AGENT_COMPLETE, None),  # stopped; keeps its last_active (seed 002)
}
"""How each Claude Code hook event counts. A permission prompt *appearing* (Notification) is not
the user engaging (seed 002, design option 2), so only UserPromptSubmit moves ``last_active``."""


def event_for(payload: dict[str, Any]) -> tuple[str, dict[str, str]] | None:
    """Our ``(event name, attributes)`` for one hook payload, or ``None`` to send nothing."""
    session_id = payload.get("session_id")
    mapped = EVENTS.get(str(payload.get("hook_event_name")))
    if not isinstance(session_id, str) or not session_id or mapped is None:
        return None
    name, source = mapped
    attrs = {ATTR_SESSION_ID: session_id, ATTR_GEN_AI_AGENT_NAME: AGENT_NAME}
    if source is not None:
        attrs[ATTR_SOURCE] = str(source)
    if name == EVENT_AGENT_COMPLETE and payload.get("reason"):
        attrs[ATTR_RESULT] = str(payload["reason"])
    return name, attrs


def hook_claude(
    stdin: bytes, url: str, timeout: float, clock: Callable[[], int] = time.time_ns
) -> None:
    """Translate and send one hook payload. Never raises: logs what went wrong."""
    try:
        payload = json.loads(stdin)
        found = event_for(payload) if isinstance(payload, dict) else None
        if found is None:
            _log.info("ignoring hook input without a session_id or known hook_event_name")
            return
        host_id, host_name = host_identity()
        resource = {
            ATTR_SERVICE_NAME: AGENT_NAME,
            ATTR_HOST_ID: host_id,
            ATTR_HOST_NAME: host_name,
        }
        name, attrs = found
        post_logs(url, logs_request(resource, [(name, attrs, clock())]), timeout)
    except Exception:
        _log.exception("lastactive hook claude: not reported")
