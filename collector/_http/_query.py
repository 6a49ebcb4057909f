"""``GET /v1/sessions``, ``/v1/sessions/{id}``, ``/v1/hosts/{id}``: entities as JSON.

The models here (:class:`EntityOut`, :class:`EvaluationOut`, :class:`HoldOut`) are the HTTP
API's view of :class:`~lastactive.collector._state.EntityView` and the policy's
:class:`~lastactive.collector.policy.Evaluation`: times as RFC 3339 UTC, ``null`` for never.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Final, TypeVar

from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel, Field, TypeAdapter
from starlette.convertors import Convertor, register_url_convertor

from lastactive.collector._clocks import ReporterClock, ReporterClocks
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._paging import DEFAULT_PAGE, MAX_PAGE, PageTokenError, reporters_page
from lastactive.collector._sliced import Sliced, on_loop
from lastactive.collector._state import (
    NANOS,
    ActivityState,
    EntityView,
    Hold,
    Kind,
    ProcessStatus,
)
from lastactive.collector.policy import Evaluation, IdleState, Policy, process_shown
from lastactive.conventions import AgentStatus, AgentTurn, HoldKind, Source


class _IdConvertor(Convertor[str]):
    """``{name:id}`` in a route: any id, "/" and control characters included (sent
    percent-encoded; starlette's ``path`` stops at a newline)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("id", _IdConvertor())


def _dt(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / NANOS, UTC)


def _time(ns: int | None) -> datetime | None:
    return None if ns is None else _dt(ns)


class ProcessOut(BaseModel):
    status: ProcessStatus | None = Field(
        description="running, exited, lost (its liveness lapsed: the wrapper died without "
        "reporting an exit), or null when never started"
    )
    pid: int | None
    exit_code: int | None = Field(description="set once exited; 128+N when killed by signal N")


class HoldOut(BaseModel):
    kind: HoldKind = Field(description="lease, client, foreground or tool")
    id: str
    until: datetime | None = Field(description="null = until released")
    since: datetime = Field(description="its latest report")
    counts: bool = Field(description="it holds the entity up under the policy (exempt)")
    reason: str | None = Field(description="what the holder says it is doing")


def holds_out(holds: Iterable[Hold], counting: Iterable[Hold]) -> list[HoldOut]:
    """``holds`` as the API shows them, ``counts`` for those in ``counting``."""
    counted = set(counting)
    return [
        HoldOut(
            kind=h.kind,
            id=h.id,
            until=_time(h.until or None),
            since=_dt(h.since),
            counts=h in counted,
            reason=h.reason,
        )
        for h in holds
    ]


class EvaluationOut(BaseModel):
    """The idle policy's evaluation of an entity at query time (the same on every session
    and host, in ``/v1/decisions`` and in watch snapshots)."""

    state: IdleState = Field(description="active, idle, hibernated or ended")
    idle_since: datetime = Field(description="the last counted activity, else first_seen")
    hibernate_at: datetime | None = Field(description="the deadline; null while held up")
    hibernate: bool = Field(description="due now")
    runaway: bool
    stuck: bool
    reason: str = Field(description="why the state and the deadline, in words")
    runaway_reason: str = Field(description="why runaway or not, in words")
    stuck_reason: str = Field(description="why stuck or not, in words")

    @staticmethod
    def fields_of(e: Evaluation) -> dict[str, object]:
        return {
            "state": e.state,
            "idle_since": _dt(e.idle_since),
            "hibernate_at": _time(e.hibernate_at),
            "hibernate": e.hibernate,
            "runaway": e.runaway,
            "stuck": e.stuck,
            "reason": e.reason,
            "runaway_reason": e.runaway_reason,
            "stuck_reason": e.stuck_reason,
        }


class EntityOut(EvaluationOut):
    """A session, agent or host with the policy's evaluation. Times are RFC 3339, UTC;
    null = never."""

    kind: Kind = Field(description="session, agent or host")
    id: str
    host_id: str | None
    agent_id: str | None
    service_name: str | None
    first_seen: datetime
    last_seen: datetime = Field(description="any telemetry (liveness)")
    last_active: datetime | None = Field(description="engagement: input, prompt, user")
    last_activity: datetime | None = Field(description="latest activity that ends idleness")
    last_source: Source | None = Field(description="the source of last_activity: the why")
    idle_seconds: float = Field(description="seconds since last_activity (or first_seen)")
    sources: dict[str, datetime] = Field(description="last time per lastactive.source")
    input_bytes: int
    output_bytes: int
    input_bytes_per_second: float = Field(description="over the last 30 s")
    output_bytes_per_second: float = Field(description="over the last 30 s")
    process: ProcessOut
    status: AgentStatus = Field(description="active, completed or error (seed 004)")
    turn: AgentTurn | None = Field(
        description="agent sessions: working, waiting (for the user), ended"
    )
    task: str | None = Field(description="what an agent session works on")
    result: str | None = Field(description="how it ended: result or error")
    held_by: list[HoldOut] = Field(
        description="holds standing now (the why beside last_source); counts: exempt under "
        "the policy"
    )
    attributes: dict[str, str] = Field(
        description="resource attributes that policy overrides select on (match.attributes)"
    )
    clock_offset_seconds: float = Field(
        description="estimated clock offset of the reporter that last reported about it "
        "(positive: its clock is behind); beyond LASTACTIVE_MAX_CLOCK_SKEW its times are "
        "corrected by it"
    )

    @classmethod
    def of(cls, v: EntityView, e: Evaluation) -> EntityOut:
        return cls(
            **EvaluationOut.fields_of(e),
            kind=v.kind,
            id=v.id,
            host_id=v.host_id,
            agent_id=v.agent_id,
            service_name=v.service_name,
            first_seen=_dt(v.first_seen),
            last_seen=_dt(v.last_seen),
            last_active=_time(v.last_active),
            last_activity=_time(v.last_activity),
            last_source=v.last_source,
            idle_seconds=round(v.idle_seconds, 3),
            sources={k: _dt(t) for k, t in v.sources.items()},
            input_bytes=v.input_bytes,
            output_bytes=v.output_bytes,
            input_bytes_per_second=v.input_bytes_per_second,
            output_bytes_per_second=v.output_bytes_per_second,
            process=ProcessOut(
                status=process_shown(v, e),
                pid=v.pid,
                exit_code=v.exit_code,
            ),
            status=v.status,
            turn=v.turn,
            task=v.task,
            result=v.result,
            held_by=holds_out(v.held_by, e.held_by),
            attributes=v.attributes,
            clock_offset_seconds=v.clock_offset / NANOS,
        )


class SessionList(BaseModel):
    sessions: list[EntityOut]
    next_page_token: str = Field(
        "", description="pass as page_token for the next page; empty on the last page"
    )


MODELS_SLICE: Final = 64
"""Entries of a page made into models and encoded per slice (a session ~30 us: the
evaluation, the model and its JSON; a slice holds the loop ~2 ms)."""

_TEXT: Final = TypeAdapter(str)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def page_body(
    name: str, adapter: TypeAdapter[list[M]], items: list[T], model: Callable[[T], M], token: str
) -> Sliced[bytes]:
    """The JSON of a page, ``{name: [model(item) ...], "next_page_token": token}``, byte for
    byte what pydantic makes of the page's model (``adapter`` encodes a list of the entries'
    model), :data:`MODELS_SLICE` entries a slice (issue 15: a page of 10,000 sessions held the
    event loop ~340 ms in one piece, 1000 ~45 ms)."""
    chunks = []
    for i in range(0, len(items), MODELS_SLICE):
        chunks.append(adapter.dump_json([model(x) for x in items[i : i + MODELS_SLICE]])[1:-1])
        yield
    return b'{"%b":[%b],"next_page_token":%b}' % (
        name.encode(),
        b",".join(chunks),
        _TEXT.dump_json(token),
    )


_ENTITIES: Final = TypeAdapter(list[EntityOut])


def sessions_body(
    views: list[EntityView], evaluate: Callable[[EntityView], Evaluation], token: str
) -> Sliced[bytes]:
    """The JSON of ``SessionList(sessions=[EntityOut.of(v, evaluate(v)) ...],
    next_page_token=token)``: :func:`page_body`."""
    return page_body("sessions", _ENTITIES, views, lambda v: EntityOut.of(v, evaluate(v)), token)


class ReporterOut(BaseModel):
    """One reporter (a resource that sends telemetry) and its clock."""

    service_name: str | None
    service_instance_id: str | None
    host_id: str | None
    session_id: str | None
    clock_offset_seconds: float = Field(
        description="estimated offset of its clock (positive: behind ours)"
    )
    skewed: bool = Field(
        description="beyond LASTACTIVE_MAX_CLOCK_SKEW: its timestamps are corrected"
    )
    last_seen: datetime


class ReporterList(BaseModel):
    reporters: list[ReporterOut] = Field(description="largest offset first")
    next_page_token: str = Field(
        "", description="pass as page_token for the next page; empty on the last page"
    )


_REPORTERS: Final = TypeAdapter(list[ReporterOut])

Limit = Annotated[
    int, Query(ge=0, description=f"page size; 0 = {DEFAULT_PAGE}, at most {MAX_PAGE}")
]
PageToken = Annotated[str, Query(description="the previous page's next_page_token")]


TrustedOnly = Annotated[
    bool,
    Query(description="count only trusted sources (seed 000's table) for last_active and idle"),
]


def query_router(
    state: ActivityState,
    policy: Policy,
    clocks: ReporterClocks,
    clock: Callable[[], int],
    fetch: Callable[[Kind, str], Awaitable[None]],
    page: Callable[[int, str | None, int, bool, str], Awaitable[tuple[list[EntityView], str]]],
) -> APIRouter:
    """``GET /v1/sessions`` (pages from ``page``: :meth:`~lastactive.collector._core.Core.
    sessions_page`), ``/v1/sessions/{id}``, ``/v1/hosts/{id}``, each entity with the policy's
    evaluation; ``GET /v1/reporters``, each reporter's clock."""
    router = APIRouter(tags=["query"])

    def reporter_out(c: ReporterClock) -> ReporterOut:
        return ReporterOut(
            service_name=c.key[0],
            service_instance_id=c.key[1],
            host_id=c.key[2],
            session_id=c.key[3],
            clock_offset_seconds=c.offset / NANOS,
            skewed=clocks.correction(c) != 0,
            last_seen=_dt(c.last_seen),
        )

    @router.get(
        "/v1/reporters",
        response_model=ReporterList,
        responses={400: {"description": "page_token is not one this collector made"}},
    )
    async def list_reporters(
        skewed: Annotated[bool, Query(description="only those beyond the tolerance")] = False,
        limit: Limit = 0,
        page_token: PageToken = "",
    ) -> Response:
        """Reporters heard from in the last 5 to 10 minutes with their estimated clock
        offsets (the offsets lastactive corrects their timestamps by), largest first (then by
        service, instance, host and session), a page at a time."""
        try:
            listed, token = await on_loop(reporters_page(clocks, limit, skewed, page_token))
        except PageTokenError as exc:
            raise HTTPException(400, str(exc)) from None
        body = await on_loop(page_body("reporters", _REPORTERS, listed, reporter_out, token))
        return Response(body, media_type="application/json")

    @router.get(
        "/v1/sessions",
        response_model=SessionList,
        responses={
            400: {"description": "page_token is not one this collector made"},
            503: {"description": "a replica could not read the store (Retry-After)"},
        },
    )
    async def list_sessions(
        host: Annotated[str | None, Query(description="only sessions on this host.id")] = None,
        limit: Limit = 0,
        page_token: PageToken = "",
        trusted_only: TrustedOnly = False,
    ) -> Response:
        """Sessions, most recent first: by last_active, then last_seen, then first_seen (then
        id), a page at a time."""
        now = clock()
        try:
            views, token = await page(now, host, limit, trusted_only, page_token)
        except PageTokenError as exc:
            raise HTTPException(400, str(exc)) from None
        except StoreUnavailableError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        body = await on_loop(sessions_body(views, lambda v: policy.evaluate(v, now), token))
        return Response(body, media_type="application/json")

    async def get(kind: Kind, key: str, trusted_only: bool) -> EntityOut:
        await fetch(kind, key)
        now = clock()
        v = state.get(kind, key, now, trusted_only)
        if v is None:
            raise HTTPException(404, f"no {kind} with id {key!r}")
        return EntityOut.of(v, policy.evaluate(v, now))

    @router.get(
        "/v1/sessions/{session_id:id}",
        response_model=EntityOut,
        responses={404: {"description": "no session with this id"}},
    )
    async def get_session(session_id: str, trusted_only: TrustedOnly = False) -> EntityOut:
        """One session (its id percent-encoded); 404 if unknown."""
        return await get(Kind.SESSION, session_id, trusted_only)

    @router.get(
        "/v1/hosts/{host_id:id}",
        response_model=EntityOut,
        responses={404: {"description": "no host with this id"}},
    )
    async def get_host(host_id: str, trusted_only: TrustedOnly = False) -> EntityOut:
        """One host, across its agents and sessions (its id percent-encoded); 404 if
        unknown."""
        return await get(Kind.HOST, host_id, trusted_only)

    return router
