"""The idle policy over HTTP: ``GET /v1/decisions`` (now and soon) and ``GET /v1/watch``
(Server-Sent Events: a snapshot, then transitions as they happen)."""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from collections.abc import AsyncIterator
from json.encoder import encode_basestring_ascii
from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, HTTPException, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from lastactive.collector._core import Core
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._http._query import EvaluationOut, HoldOut
from lastactive.collector._paging import DEFAULT_PAGE, MAX_PAGE, page_size
from lastactive.collector._sliced import ENCODE_SLICE, Sliced, on_loop
from lastactive.collector._state import NANOS, EntityView, Hold, Kind
from lastactive.collector._transitions import Snapshot, Transition
from lastactive.collector._watch import (
    KeepaliveEvent,
    ResyncEvent,
    SnapshotEvent,
    TransitionEvent,
    WatchLimitError,
)
from lastactive.collector.policy import MAX_DURATION_S, Decision, Decisions, Evaluation

_log = logging.getLogger(__name__)

_COMPACT: Final = (",", ":")


class DecisionOut(EvaluationOut):
    """One session or host and the policy's evaluation of it (the schema; the body is made
    by :func:`decision_text`)."""

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


_quote: Final = encode_basestring_ascii
"""A text as ``json.dumps`` writes it: quoted, escaped, ASCII (the json module's C encoder)."""
_BOOL: Final = ("false", "true")


def _text_or_null(text: str | None) -> str:
    return "null" if text is None else _quote(text)


def _iso_or_null(ns: int | None) -> str:
    """``ns`` as a JSON RFC 3339 text (:func:`_iso`); ``null`` for ``None``."""
    return "null" if ns is None else f'"{_iso(ns)}"'


def _evaluated_text(v: EntityView, e: Evaluation) -> str:
    """An entity and the policy's evaluation of it: the members (no braces) of the JSON
    object of a :class:`DecisionOut` but ``held_by``, as ``json.dumps`` writes them (compact).
    Written directly, without a dict to encode (issue 15: ~2000 entries a decisions answer
    at 1M sessions, 2.8 us an entry against 4.5 for a dict and ``json.dumps``)."""
    return (
        f'"kind":{_quote(v.kind)},"id":{_quote(v.id)},"host_id":{_text_or_null(v.host_id)},'
        f'"state":{_quote(e.state)},"runaway":{_BOOL[e.runaway]},"stuck":{_BOOL[e.stuck]},'
        f'"hibernate":{_BOOL[e.hibernate]},"hibernate_at":{_iso_or_null(e.hibernate_at)},'
        f'"idle_since":"{_iso(e.idle_since)}","reason":{_quote(e.reason)},'
        f'"runaway_reason":{_quote(e.runaway_reason)},"stuck_reason":{_quote(e.stuck_reason)}'
    )


def state_text(s: Snapshot) -> str:
    """A watcher's view of one entity's current state (SSE ``snapshot`` entries), JSON."""
    return f"{{{_evaluated_text(s.view, s.evaluation)}}}"


def _hold_text(h: Hold) -> str:
    return (
        f'{{"kind":{_quote(h.kind)},"id":{_quote(h.id)},'
        f'"until":{_iso_or_null(h.until or None)},"since":"{_iso(h.since)}",'
        f'"counts":true,"reason":{_text_or_null(h.reason)}}}'
    )


def decision_text(d: Decision) -> str:
    """One :class:`DecisionOut` as compact JSON, its holds all counting."""
    held = d.evaluation.held_by
    holds = ",".join(_hold_text(h) for h in held) if held else ""
    return f'{{{_evaluated_text(d.view, d.evaluation)},"held_by":[{holds}]}}'


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
            texts.append(",".join([decision_text(d) for d in entries[i : i + ENCODE_SLICE]]))
            yield
        lists.append(f'"{name}":[{",".join(texts)}]')
    return f'{{{",".join(lists)},"truncated":{_BOOL[out.truncated]}}}'


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


def _sse(event: str, body: str, event_id: str | None = None) -> bytes:
    """One Server-Sent Event whose data is ``body`` (JSON text, one line)."""
    head = f"id: {event_id}\n" if event_id is not None else ""
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
            events = await core.open_watch(host, session, last_event_id or after)
        except WatchLimitError as exc:
            raise HTTPException(503, str(exc), headers={"Retry-After": "5"}) from None
        except StoreUnavailableError as exc:  # a replica reads the snapshot from the store
            raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None

        async def stream() -> AsyncIterator[bytes]:
            try:
                async for event in events:
                    match event:
                        case SnapshotEvent(states, more, event_id):
                            texts = ",".join([state_text(s) for s in states])
                            body = f'{{"states":[{texts}],"more":{_BOOL[more]}}}'
                            yield _sse("snapshot", body, event_id)
                        case TransitionEvent(transition, event_id):
                            body = json.dumps(transition_json(transition), separators=_COMPACT)
                            yield _sse("transition", body, event_id)
                        case ResyncEvent():
                            yield _sse("resync", "{}")
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
