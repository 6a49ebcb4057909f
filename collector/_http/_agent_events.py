"""``POST /v1/agent-events``: seed 004's webhook, for senders without an OpenTelemetry SDK."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lastactive.collector._http._query import EntityOut
from lastactive.collector._ingest import Ingest
from lastactive.collector._state import Kind
from lastactive.conventions import (
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_ERROR,
    EVENT_AGENT_PROGRESS,
    EVENT_AGENT_SPAWN,
)


class AgentEventIn(BaseModel):
    """Seed 004's webhook body: ``{"action", "sessionKey", "agentName", "task", "result"}``."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["spawn", "progress", "complete", "error"]
    sessionKey: str = Field(min_length=1, max_length=512)  # noqa: N815 - seed 004's field name
    agentName: str | None = Field(None, min_length=1, max_length=512)  # noqa: N815
    task: str | None = Field(None, max_length=4096)
    result: str | None = Field(None, max_length=65536)


_AGENT_EVENT_OF_ACTION = {
    "spawn": EVENT_AGENT_SPAWN,
    "progress": EVENT_AGENT_PROGRESS,
    "complete": EVENT_AGENT_COMPLETE,
    "error": EVENT_AGENT_ERROR,
}


def agent_router(ingest: Ingest, clock: Callable[[], int]) -> APIRouter:
    """``POST /v1/agent-events``: seed 004's webhook, for senders without an OTel SDK."""
    router = APIRouter(tags=["agent lifecycle"])

    @router.post(
        "/v1/agent-events",
        response_model=EntityOut,
        responses={400: {"description": "the body is not a valid agent event"}},
    )
    async def agent_event(request: Request) -> EntityOut:
        """``spawn`` makes the session active with its task, ``progress`` keeps it active,
        ``complete``/``error`` end it with its result. Returns the session's state."""
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
        ingest.agent_webhook(
            event.sessionKey,
            event.agentName,
            _AGENT_EVENT_OF_ACTION[event.action],
            event.task,
            event.result,
        )
        v = ingest.state.get(Kind.SESSION, event.sessionKey, clock())
        assert v is not None
        return EntityOut.of(v)

    return router
