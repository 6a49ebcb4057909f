"""The HTTP edge: OTLP/HTTP receivers and the query API on one FastAPI app.

It only translates and delegates: bodies to :mod:`lastactive.collector._otlp_body`, requests
to :class:`~lastactive.collector._ingest.Ingest`, queries to
:class:`~lastactive.collector._state.ActivityState`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from google.protobuf.message import Message
from google.rpc import code_pb2, status_pb2
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lastactive.collector._core import Core
from lastactive.collector._grpc_edge import OTLP_SIGNALS, export_response
from lastactive.collector._ingest import Ingest, Outcome
from lastactive.collector._otlp_body import (
    CONTENT_JSON,
    BodyError,
    decompress,
    media_type,
    parse,
    serialize,
)
from lastactive.collector._state import NANOS, EntityView, Kind
from lastactive.collector._transitions import Snapshot, Transition
from lastactive.collector._watch import KeepaliveEvent, ResyncEvent, SnapshotEvent, watch_events
from lastactive.collector.policy import Decision, decide
from lastactive.conventions import (
    EVENT_AGENT_COMPLETE,
    EVENT_AGENT_ERROR,
    EVENT_AGENT_PROGRESS,
    EVENT_AGENT_SPAWN,
)

_CODE_OF_STATUS = {
    400: code_pb2.INVALID_ARGUMENT,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
}


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


def _error(status: int, message: str, media: str) -> Response:
    """OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding."""
    body = status_pb2.Status(code=_CODE_OF_STATUS.get(status, code_pb2.UNKNOWN), message=message)
    return Response(serialize(body, media), status_code=status, media_type=media)


def otlp_router(core: Core, max_request_bytes: int) -> APIRouter:
    """``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces`` (OTLP/HTTP, protobuf or JSON, gzip)."""
    router = APIRouter(tags=["OTLP/HTTP"])

    async def read_body(request: Request) -> bytes:
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > max_request_bytes:
            raise BodyError(413, f"body of {length} bytes exceeds the {max_request_bytes} limit")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_request_bytes:
                raise BodyError(413, f"body exceeds the {max_request_bytes}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)

    stats = core.stats

    def route(
        request_cls: type[Message], response_cls: type[Message], field: str, signal: str
    ) -> None:
        apply: Callable[[Any], Outcome] = getattr(core.ingest, signal)

        async def export(request: Request) -> Response:
            media = CONTENT_JSON
            began = time.perf_counter()
            try:
                media = media_type(request.headers.get("content-type"))
                raw = await read_body(request)
                body = decompress(raw, request.headers.get("content-encoding"), max_request_bytes)
                out = apply(parse(body, media, request_cls))
            except BodyError as exc:
                stats.error(signal, "http", str(exc.status))
                return _error(exc.status, str(exc), media)
            stats.ok(signal, "http", out, time.perf_counter() - began)
            return Response(
                serialize(export_response(response_cls, field, out), media), media_type=media
            )

        path = f"/v1/{signal}"
        router.add_api_route(path, export, methods=["POST"], summary=f"OTLP/HTTP {path}")

    for _, request_cls, response_cls, field, signal in OTLP_SIGNALS:
        route(request_cls, response_cls, field, signal)
    return router


def query_router(ingest: Ingest, clock: Callable[[], int]) -> APIRouter:
    """``GET /v1/sessions``, ``/v1/sessions/{id}``, ``/v1/hosts/{id}``."""
    router = APIRouter(tags=["query"])
    state = ingest.state

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


class DecisionOut(BaseModel):
    """One session or host the idle policy says to hibernate, now or soon."""

    kind: str
    id: str
    host_id: str | None
    state: str = Field(description="active or idle")
    idle_since: datetime
    hibernate_at: datetime = Field(description="the deadline")
    hibernate: bool = Field(description="due now")
    runaway: bool
    stuck: bool
    reason: str = Field(description="why, in words")

    @classmethod
    def of(cls, d: Decision) -> DecisionOut:
        v, e = d.view, d.evaluation
        return cls(
            kind=v.kind,
            id=v.id,
            host_id=v.host_id,
            state=e.state,
            idle_since=datetime.fromtimestamp(e.idle_since / NANOS, UTC),
            hibernate_at=datetime.fromtimestamp((e.hibernate_at or 0) / NANOS, UTC),
            hibernate=e.hibernate,
            runaway=e.runaway,
            stuck=e.stuck,
            reason=e.reason,
        )


class DecisionList(BaseModel):
    hibernate: list[DecisionOut] = Field(description="due now, earliest deadline first")
    due_soon: list[DecisionOut] = Field(description="due within `within` seconds")


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / NANOS, UTC).isoformat().replace("+00:00", "Z")


def state_json(s: Snapshot) -> dict[str, Any]:
    """A watcher's view of one entity's current state (SSE ``snapshot`` entries)."""
    v, e = s.view, s.evaluation
    return {
        "kind": v.kind,
        "id": v.id,
        "host_id": v.host_id,
        "state": e.state,
        "runaway": e.runaway,
        "stuck": e.stuck,
        "hibernate": e.hibernate,
        "hibernate_at": None if e.hibernate_at is None else _iso(e.hibernate_at),
        "idle_since": _iso(e.idle_since),
        "reason": e.reason,
    }


def transition_json(t: Transition) -> dict[str, Any]:
    """One transition (SSE ``transition`` events)."""
    return {
        "at": _iso(t.at),
        "kind": t.kind,
        "id": t.id,
        "host_id": t.host_id,
        "field": t.field,
        "previous": t.previous,
        "current": t.current,
        "reason": t.reason,
        "hibernate_at": None if t.hibernate_at is None else _iso(t.hibernate_at),
    }


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def decisions_router(core: Core) -> APIRouter:
    """``GET /v1/decisions`` (now and soon) and ``GET /v1/watch`` (Server-Sent Events)."""
    router = APIRouter(tags=["idle policy"])
    clock, policy = core.clock, core.policy

    @router.get(
        "/v1/watch",
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def watch(
        host: Annotated[str | None, Query(description="only this host.id")] = None,
        session: Annotated[str | None, Query(description="only this session.id")] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: ``snapshot`` (current states), then ``transition`` events as
        they happen; ``resync`` (followed by a fresh snapshot) when this subscriber fell
        behind; a comment line as keepalive."""

        async def stream() -> AsyncIterator[bytes]:
            async for event in watch_events(core.hub, core.engine, host, session):
                match event:
                    case SnapshotEvent(states):
                        yield _sse("snapshot", {"states": [state_json(s) for s in states]})
                    case Transition():
                        yield _sse("transition", transition_json(event))
                    case ResyncEvent():
                        yield _sse("resync", {})
                    case KeepaliveEvent():
                        yield b": keepalive\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @router.get("/v1/decisions", response_model=DecisionList)
    async def decisions(
        within: Annotated[float, Query(ge=0, description="also list those due within (s)")] = 600,
    ) -> DecisionList:
        """Sessions and hosts to hibernate now and those due soon, each with its deadline and
        the reason in words."""
        now = clock()
        due, soon = decide(core.state.views(now), policy, now, int(within * NANOS))
        return DecisionList(
            hibernate=[DecisionOut.of(d) for d in due], due_soon=[DecisionOut.of(d) for d in soon]
        )

    return router


def create_app(
    core: Core, max_request_bytes: int, registry: CollectorRegistry | None = None
) -> FastAPI:
    """The HTTP application: OTLP receivers plus the query API, OpenAPI docs at ``/docs``."""
    app = FastAPI(
        title="lastactive",
        summary="Last-activity state per session, agent and host, from OpenTelemetry.",
        version="0.1.0",
    )
    app.include_router(otlp_router(core, max_request_bytes))
    app.include_router(query_router(core.ingest, core.clock))
    app.include_router(agent_router(core.ingest, core.clock))
    app.include_router(decisions_router(core))
    if registry is not None:

        @app.get("/metrics", tags=["metrics"], response_class=Response)
        async def metrics() -> Response:
            """The collector's own metrics, Prometheus text exposition."""
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
