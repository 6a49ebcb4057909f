"""The idle policy over HTTP: ``GET /v1/decisions`` (now and soon) and ``GET /v1/watch``
(Server-Sent Events: a snapshot, then transitions as they happen)."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from lastactive.collector._core import Core
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._http._query import EvaluationOut, HoldOut
from lastactive.collector._paging import DEFAULT_PAGE, MAX_PAGE, page_size
from lastactive.collector._sliced import ENCODE_SLICE, Sliced, on_loop
from lastactive.collector._state import NANOS, EntityView, Kind
from lastactive.collector._transitions import Snapshot, Transition
from lastactive.collector._watch import (
    KeepaliveEvent,
    ResyncEvent,
    SnapshotEvent,
    TransitionEvent,
    WatchLimitError,
    open_watch,
)
from lastactive.collector.policy import MAX_DURATION_S, Decision, Decisions, Evaluation

_log = logging.getLogger(__name__)

_COMPACT: Final = (",", ":")


class DecisionOut(EvaluationOut):
    """One session or host and the policy's evaluation of it (the schema; the body is made
    by :func:`decision_json`)."""

    kind: Kind = Field(description="session or host")
    id: str
    host_id: str | None
    held_by: list[HoldOut] = Field(description="the holds that hold it up (exempt)")


class DecisionList(BaseModel):
    hibernate: list[DecisionOut] = Field(description="due now, earliest deadline first")
    due_soon: list[DecisionOut] = Field(description="due within `within` seconds")
    held: list[DecisionOut] = Field(
        description="held up by a hold that counts (lease, foreground, tool ...), longest first"
    )
    truncated: bool = Field(
        description="a list had more than `limit` entries: it holds the first `limit`"
    )


@functools.lru_cache(maxsize=4096)
def _second_iso(second: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def _iso(ns: int) -> str:
    """``ns`` (since the epoch) as RFC 3339 UTC, to the microsecond (none shown when 0): the
    text of ``datetime.fromtimestamp(ns / 1e9, UTC)`` as the query API's models give it, which
    rounds the float half to even. A tenth of the cost (issue 15: two per decisions entry):
    the second's text is cached, its fraction formatted."""
    frac, whole = math.modf(ns / NANOS)
    us = round(frac * 1e6)
    if us >= 1_000_000:
        whole, us = whole + 1, us - 1_000_000
    elif us < 0:  # before the epoch
        whole, us = whole - 1, us + 1_000_000
    text = _second_iso(int(whole))
    return f"{text}.{us:06d}Z" if us else f"{text}Z"


def _evaluated_json(v: EntityView, e: Evaluation) -> dict[str, Any]:
    """An entity and the policy's evaluation of it as plain JSON values (the fields of
    :class:`DecisionOut` but ``held_by``): built and encoded without a model object per entry
    (issue 15: thousands of entries at 1M sessions)."""
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
        "runaway_reason": e.runaway_reason,
        "stuck_reason": e.stuck_reason,
    }


def state_json(s: Snapshot) -> dict[str, Any]:
    """A watcher's view of one entity's current state (SSE ``snapshot`` entries)."""
    return _evaluated_json(s.view, s.evaluation)


def decision_json(d: Decision) -> dict[str, Any]:
    """One :class:`DecisionOut` as plain JSON values, its holds all counting."""
    holds = [
        {
            "kind": h.kind,
            "id": h.id,
            "until": _iso(h.until) if h.until else None,
            "since": _iso(h.since),
            "counts": True,
            "reason": h.reason,
        }
        for h in d.evaluation.held_by
    ]
    out = _evaluated_json(d.view, d.evaluation)
    out["held_by"] = holds
    return out


def decisions_body(out: Decisions) -> Sliced[str]:
    """``out`` as the JSON text of a :class:`DecisionList`, :data:`ENCODE_SLICE` entries a
    slice (issue 15: 3 lists of up to 10,000 entries)."""
    lists = []
    for name, entries in (
        ("hibernate", out.hibernate),
        ("due_soon", out.due_soon),
        ("held", out.held),
    ):
        texts = []
        for i in range(0, len(entries), ENCODE_SLICE):
            chunk = [decision_json(d) for d in entries[i : i + ENCODE_SLICE]]
            texts.append(json.dumps(chunk, separators=_COMPACT)[1:-1])
            yield
        lists.append(f'"{name}":[{",".join(texts)}]')
    truncated = "true" if out.truncated else "false"
    return f'{{{",".join(lists)},"truncated":{truncated}}}'


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


def _sse(event: str, data: Any, event_id: str | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    body = json.dumps(data, separators=_COMPACT)
    return f"{head}event: {event}\ndata: {body}\n\n".encode()


def decisions_router(core: Core) -> APIRouter:
    """``GET /v1/decisions`` (now and soon) and ``GET /v1/watch`` (Server-Sent Events)."""
    router = APIRouter(tags=["idle policy"])

    @router.get(
        "/v1/watch",
        response_class=StreamingResponse,
        responses={
            200: {"content": {"text/event-stream": {}}},
            503: {"description": "the collector has its maximum of watchers (Retry-After)"},
        },
    )
    async def watch(
        host: Annotated[str | None, Query(description="only this host.id")] = None,
        session: Annotated[str | None, Query(description="only this session.id")] = None,
        after: Annotated[
            str | None, Query(description="resume after this event id (as Last-Event-ID)")
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(alias="Last-Event-ID", description="resume after this event id"),
        ] = None,
    ) -> StreamingResponse:
        """Server-Sent Events: ``snapshot`` (current states, in pages: ``"more": true`` on all
        but the last), then ``transition`` events as they happen (coalesced per entity while
        this subscriber is behind); ``resync`` (followed by a fresh snapshot) when it fell
        far behind; a comment line as keepalive. Transitions and a snapshot's last page carry
        an ``id:``; reconnecting with it (``Last-Event-ID``, as EventSource does, or
        ``after=``) resumes with what happened since, no snapshot; an id the collector cannot
        resume from gets ``resync`` and a snapshot."""

        try:
            events = await open_watch(
                core.hub, core.snapshot_pages, host, session, after=last_event_id or after
            )
        except WatchLimitError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        except StoreUnavailableError as exc:  # a replica reads the snapshot from the store
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for event in events:
                    match event:
                        case SnapshotEvent(states, more, event_id):
                            states_json = [state_json(s) for s in states]
                            body = {"states": states_json, "more": more}
                            yield _sse("snapshot", body, event_id)
                        case TransitionEvent(transition, event_id):
                            yield _sse("transition", transition_json(transition), event_id)
                        case ResyncEvent():
                            yield _sse("resync", {})
                        case KeepaliveEvent():
                            yield b": keepalive\n\n"
            except StoreUnavailableError as exc:  # a later snapshot page: the client retries
                _log.warning("watch stream ended: %s", exc)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @router.get(
        "/v1/decisions",
        response_model=DecisionList,
        responses={503: {"description": "a replica could not read the store (Retry-After)"}},
    )
    async def decisions(
        within: Annotated[
            float, Query(ge=0, le=MAX_DURATION_S, description="also list those due within (s)")
        ] = 600,
        limit: Annotated[
            int,
            Query(ge=0, description=f"entries per list; 0 = {DEFAULT_PAGE}, at most {MAX_PAGE}"),
        ] = 0,
    ) -> Response:
        """Sessions and hosts to hibernate now, those due soon, each with its deadline and
        the reason in words, and those held up, with their holds; each list its first
        ``limit`` (the most urgent: act on them and ask again)."""
        try:
            out = await core.decisions(int(within * NANOS), page_size(limit))
        except StoreUnavailableError as exc:  # a replica reads the shared index
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None
        body = await on_loop(decisions_body(out))
        return Response(body, media_type="application/json")

    return router
