"""``GET /v1/sessions``, ``/v1/sessions/{id}``, ``/v1/hosts/{id}``: entities as JSON.

The models here (:class:`EntityOut`) are the HTTP API's view of
:class:`~lastactive.collector._state.EntityView`: times as RFC 3339 UTC, ``null`` for never.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from lastactive.collector._state import NANOS, ActivityState, EntityView, Kind


def _time(ns: int | None) -> datetime | None:
    return None if ns is None else datetime.fromtimestamp(ns / NANOS, UTC)


class ProcessOut(BaseModel):
    status: str | None = Field(description="running, exited, or null when never started")
    pid: int | None
    exit_code: int | None = Field(description="set once exited; 128+N when killed by signal N")


class HoldOut(BaseModel):
    kind: str = Field(description="lease, client or foreground")
    id: str
    until: datetime | None = Field(description="null = until released")


class EntityOut(BaseModel):
    """A session, agent or host. Times are RFC 3339, UTC; null = never."""

    kind: str
    id: str
    host_id: str | None
    agent_id: str | None
    service_name: str | None
    first_seen: datetime
    last_seen: datetime = Field(description="any telemetry (liveness)")
    last_active: datetime | None = Field(description="engagement: input, prompt, user")
    last_activity: datetime | None = Field(description="latest activity that ends idleness")
    last_source: str | None = Field(description="the source of last_activity: the why")
    idle_seconds: float = Field(description="seconds since last_activity (or first_seen)")
    sources: dict[str, datetime] = Field(description="last time per lastactive.source")
    input_bytes: int
    output_bytes: int
    input_bytes_per_second: float = Field(description="over the last 30 s")
    output_bytes_per_second: float = Field(description="over the last 30 s")
    process: ProcessOut
    status: str = Field(description="active, completed or error (seed 004)")
    task: str | None = Field(description="what an agent session works on")
    result: str | None = Field(description="how it ended: result or error")
    held_by: list[HoldOut] = Field(description="what holds it up now: the why beside last_source")
    attributes: dict[str, str] = Field(
        description="resource attributes that policy overrides select on (match.attributes)"
    )

    @classmethod
    def of(cls, v: EntityView) -> EntityOut:
        return cls(
            kind=v.kind,
            id=v.id,
            host_id=v.host_id,
            agent_id=v.agent_id,
            service_name=v.service_name,
            first_seen=datetime.fromtimestamp(v.first_seen / NANOS, UTC),
            last_seen=datetime.fromtimestamp(v.last_seen / NANOS, UTC),
            last_active=_time(v.last_active),
            last_activity=_time(v.last_activity),
            last_source=v.last_source,
            idle_seconds=round(v.idle_seconds, 3),
            sources={k: datetime.fromtimestamp(t / NANOS, UTC) for k, t in v.sources.items()},
            input_bytes=v.input_bytes,
            output_bytes=v.output_bytes,
            input_bytes_per_second=v.input_bytes_per_second,
            output_bytes_per_second=v.output_bytes_per_second,
            process=ProcessOut(status=v.process_status, pid=v.pid, exit_code=v.exit_code),
            status=v.status,
            task=v.task,
            result=v.result,
            held_by=[
                HoldOut(kind=h.kind, id=h.id, until=_time(h.until or None)) for h in v.held_by
            ],
            attributes=v.attributes,
        )


class SessionList(BaseModel):
    sessions: list[EntityOut]


TrustedOnly = Annotated[
    bool,
    Query(description="count only trusted sources (seed 000's table) for last_active and idle"),
]


def query_router(state: ActivityState, clock: Callable[[], int]) -> APIRouter:
    """``GET /v1/sessions``, ``/v1/sessions/{id}``, ``/v1/hosts/{id}``."""
    router = APIRouter(tags=["query"])

    @router.get("/v1/sessions", response_model=SessionList)
    async def list_sessions(
        host: Annotated[str | None, Query(description="only sessions on this host.id")] = None,
        limit: Annotated[int, Query(ge=0, description="at most this many; 0 = all")] = 0,
        trusted_only: TrustedOnly = False,
    ) -> SessionList:
        """Sessions, most recent first: by last_active, then last_seen, then first_seen."""
        views = state.sessions(clock(), host, limit, trusted_only)
        return SessionList(sessions=[EntityOut.of(v) for v in views])

    def get(kind: Kind, key: str, trusted_only: bool) -> EntityOut:
        v = state.get(kind, key, clock(), trusted_only)
        if v is None:
            raise HTTPException(404, f"no {kind} with id {key!r}")
        return EntityOut.of(v)

    @router.get("/v1/sessions/{session_id}", response_model=EntityOut)
    async def get_session(session_id: str, trusted_only: TrustedOnly = False) -> EntityOut:
        """One session; 404 if unknown."""
        return get(Kind.SESSION, session_id, trusted_only)

    @router.get("/v1/hosts/{host_id}", response_model=EntityOut)
    async def get_host(host_id: str, trusted_only: TrustedOnly = False) -> EntityOut:
        """One host, across its agents and sessions; 404 if unknown."""
        return get(Kind.HOST, host_id, trusted_only)

    return router
