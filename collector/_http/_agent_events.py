"""``POST /v1/agent-events``: seed 004's webhook, for senders without an OpenTelemetry SDK."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lastactive.collector._auth import Credentials, Principal, Scope
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._http._auth import requires
from lastactive.collector._http._query import EntityOut
from lastactive.collector._ingest import ForbiddenItemError, Ingest, RejectedError
from lastactive.collector._record import MAX_ID_CHARS, MAX_RESULT_CHARS, MAX_TASK_CHARS
from lastactive.collector._state import EntityLimitError, Kind
from lastactive.collector.policy import Policy
from lastactive.conventions import (
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_ERROR,
    EVENT_AGENT_PROGRESS,
    EVENT_AGENT_SPAWN,
    AgentTurn,
)


class AgentEventIn(BaseModel):
    """Seed 004's webhook body: ``{"action", "sessionKey", "agentName", "task", "result"}``,
    and ours: ``hostId`` (the host the session runs on, so the host's decision sees it) and
    ``turn`` (``working`` or ``waiting`` for the user; ``spawn``/``progress`` mean working)."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["spawn", "progress", "complete", "error"]
    sessionKey: str = Field(min_length=1, max_length=MAX_ID_CHARS)  # noqa: N815 - seed 004's
    agentName: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)  # noqa: N815
    task: str | None = Field(None, max_length=MAX_TASK_CHARS)
    result: str | None = Field(None, max_length=MAX_RESULT_CHARS)
    hostId: str | None = Field(None, min_length=1, max_length=MAX_ID_CHARS)  # noqa: N815
    turn: Literal["working", "waiting"] | None = None


_AGENT_EVENT_OF_ACTION = {
    "spawn": EVENT_AGENT_SPAWN,
    "progress": EVENT_AGENT_PROGRESS,
    "complete": EVENT_AGENT_COMPLETE,
    "error": EVENT_AGENT_ERROR,
}


def agent_router(
    ingest: Ingest,
    policy: Policy,
    clock: Callable[[], int],
    durable: Callable[[], Awaitable[None]],
    credentials: Credentials,
) -> APIRouter:
    """``POST /v1/agent-events``: seed 004's webhook, for senders without an OTel SDK; answered
    once the event is committed (``durable``); a ``report`` credential bound to a host
    reports about its own sessions only (403 otherwise)."""
    router = APIRouter(tags=["agent lifecycle"])

    @router.post(
        "/v1/agent-events",
        dependencies=[Depends(requires(credentials, Scope.REPORT))],
        response_model=EntityOut,
        # The body is read and validated here (a 400 naming the problem, not FastAPI's 422),
        # and published for OpenAPI all the same.
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": AgentEventIn.model_json_schema()}},
            }
        },
        responses={
            400: {"description": "the body is not a valid agent event"},
            403: {"description": "the credential may not report about this session"},
            429: {"description": "a new session beyond the collector's maximum (Retry-After)"},
            503: {"description": "the state store failed; not recorded (Retry-After)"},
        },
    )
    async def agent_event(request: Request) -> EntityOut:
        """``spawn`` makes the session active with its task, ``progress`` keeps it active,
        ``complete``/``error`` end it with its result. Returns the session's state."""
        principal: Principal = request.state.principal
        body = await request.body()
        try:
            event = AgentEventIn.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise HTTPException(
                400,
                f"invalid agent event ({problems}); expected JSON like "
                '{"action": "spawn|progress|complete|error", "sessionKey": "...", '
                '"agentName": "...", "task": "...", "result": "..."}',
            ) from None
        try:
            ingest.agent_webhook(
                event.sessionKey,
                event.agentName,
                _AGENT_EVENT_OF_ACTION[event.action],
                event.task,
                event.result,
                host_id=event.hostId,
                turn=None if event.turn is None else AgentTurn(event.turn),
                principal=principal,
            )
        except ForbiddenItemError as exc:
            credentials.refuse("http", exc)
            raise HTTPException(403, str(exc)) from None
        except RejectedError as exc:
            raise HTTPException(400, f"invalid agent event: {exc}") from None
        except EntityLimitError as exc:
            raise HTTPException(429, str(exc), headers={"Retry-After": "60"}) from None
        try:
            await durable()  # acknowledged means committed
        except StoreUnavailableError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        now = clock()
        v = ingest.state.get(Kind.SESSION, event.sessionKey, now)
        assert v is not None
        return EntityOut.of(v, policy.evaluate(v, now))

    return router
