"""The gRPC edge: OTLP trace/metrics/logs ``Export``, the ``ActivityQuery`` service and gRPC
health checking, all on one ``grpc.aio`` server. It only translates and delegates."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from lastactive.collector._auth import (
    Credentials,
    ForbiddenError,
    Principal,
    Scope,
    UnauthenticatedError,
)
from lastactive.collector._core import Core
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._otlp_signals import SIGNALS, OtlpSignal, export_response
from lastactive.collector._paging import PageTokenError, page_size
from lastactive.collector._sliced import ENCODE_SLICE, mapped, on_loop
from lastactive.collector._startup import LOADING_RETRY_S
from lastactive.collector._state import NANOS, EntityView, Hold, Kind
from lastactive.collector._tls import grpc_identity
from lastactive.collector._transitions import Snapshot, Transition
from lastactive.collector._watch import (
    KeepaliveEvent,
    ResyncEvent,
    SnapshotEvent,
    TransitionEvent,
    WatchLimitError,
)
from lastactive.collector.policy import (
    MAX_DURATION_S,
    Decision,
    Evaluation,
    process_shown,
)
from lastactive.collector.proto import query_pb2, query_pb2_grpc


@dataclass(frozen=True, slots=True)
class _Status(grpc.Status):  # type: ignore[misc]
    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


_RETRY_INFO_KEY: Final = "google.rpc.retryinfo-bin"


def unavailable(message: str, retry_after_s: float) -> grpc.Status:
    """``UNAVAILABLE`` with ``google.rpc.RetryInfo`` (OTLP specification, "Failures": the
    exporter retries after ``retry_after_s``), carried both ways exporters read it: in the
    status details (``grpc-status-details-bin``: OTel Go and the Collector) and in its own
    trailer (``google.rpc.retryinfo-bin``: opentelemetry-python)."""
    retry = error_details_pb2.RetryInfo()
    retry.retry_delay.FromNanoseconds(int(retry_after_s * NANOS))
    detail = any_pb2.Any()
    detail.Pack(retry)
    status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.UNAVAILABLE, message=message, details=[detail])
    )
    trailers = (*status.trailing_metadata, (_RETRY_INFO_KEY, retry.SerializeToString()))
    return _Status(status.code, status.details, trailers)


async def authorize(
    credentials: Credentials, context: grpc.aio.ServicerContext[Any, Any], *scopes: Scope
) -> Principal:
    """The caller's principal, holding one of ``scopes``: its ``authorization: Bearer <token>``
    metadata, else its verified client certificate. Otherwise the call is aborted
    UNAUTHENTICATED or PERMISSION_DENIED (and counted)."""
    if not credentials.enabled:
        return credentials.authenticate(None, None)
    authorization = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            authorization = str(value)
            break
    certificate = None if authorization else grpc_identity(context.auth_context())
    try:
        principal = credentials.authenticate(authorization, certificate)
        principal.require_any(scopes)
    except UnauthenticatedError as exc:
        credentials.refuse("grpc", exc)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, str(exc))
    except ForbiddenError as exc:
        credentials.refuse("grpc", exc)
        await context.abort(grpc.StatusCode.PERMISSION_DENIED, str(exc))
    return principal


def _otlp_handler(signal: OtlpSignal, core: Core) -> grpc.GenericRpcHandler:
    stats, ingest, name, admission = core.stats, core.ingest, signal.name, core.admission
    credentials, scopes = core.credentials, signal.scopes

    # No request deserializer: we parse ourselves so undecodable bytes are INVALID_ARGUMENT
    # (grpcio would answer INTERNAL). The size limit is grpcio's: RESOURCE_EXHAUSTED.
    async def export(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        began = time.perf_counter()
        size = len(request)
        principal = await authorize(credentials, context, *scopes)
        if not admission.enter(size):
            stats.error(name, "grpc", "unavailable")
            delay = admission.retry_delay()
            await context.abort_with_status(unavailable(admission.refusal(delay), delay))
        try:
            try:
                req = signal.request.FromString(request)
            except DecodeError as exc:
                stats.error(name, "grpc", "invalid_argument")
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"undecodable protobuf {signal.request.__name__}: {exc}",
                )
            out = await core.apply(signal.sliced(ingest, req, principal))
            try:
                await core.durable()  # acknowledged means committed
            except StoreUnavailableError as exc:
                stats.error(name, "grpc", "unavailable")
                await context.abort_with_status(unavailable(str(exc), admission.retry_delay()))
        finally:
            admission.leave(size)
        stats.ok(name, "grpc", out, time.perf_counter() - began)
        return export_response(signal, out).SerializeToString()

    return grpc.method_handlers_generic_handler(
        signal.service, {"Export": grpc.unary_unary_rpc_method_handler(export)}
    )


def _holds(holds: Iterable[Hold], counting: Iterable[Hold]) -> list[query_pb2.Hold]:
    counted = set(counting)
    return [
        query_pb2.Hold(
            kind=h.kind,
            id=h.id,
            until_unix_nano=h.until,
            since_unix_nano=h.since,
            counts=h in counted,
            reason=h.reason or "",
        )
        for h in holds
    ]


def entity_message(v: EntityView, e: Evaluation) -> query_pb2.Entity:
    """An :class:`EntityView` and its evaluation as the ``lastactive.v1.Entity`` message (0 /
    "" for none)."""
    return query_pb2.Entity(
        kind=v.kind,
        id=v.id,
        host_id=v.host_id or "",
        agent_id=v.agent_id or "",
        service_name=v.service_name or "",
        first_seen_unix_nano=v.first_seen,
        last_seen_unix_nano=v.last_seen,
        last_active_unix_nano=v.last_active or 0,
        last_activity_unix_nano=v.last_activity or 0,
        last_source=v.last_source or "",
        idle_seconds=v.idle_seconds,
        sources_unix_nano=v.sources,
        input_bytes=v.input_bytes,
        output_bytes=v.output_bytes,
        input_bytes_per_second=v.input_bytes_per_second,
        output_bytes_per_second=v.output_bytes_per_second,
        process_status=process_shown(v, e) or "",
        pid=v.pid or 0,
        exited=v.exit_code is not None,
        exit_code=v.exit_code or 0,
        status=v.status,
        task=v.task or "",
        result=v.result or "",
        held_by=_holds(v.held_by, e.held_by),
        attributes=v.attributes,
        state=e.state,
        idle_since_unix_nano=e.idle_since,
        hibernate_at_unix_nano=e.hibernate_at or 0,
        hibernate=e.hibernate,
        runaway=e.runaway,
        stuck=e.stuck,
        reason=e.reason,
        runaway_reason=e.runaway_reason,
        stuck_reason=e.stuck_reason,
        turn=v.turn or "",
        clock_offset_seconds=v.clock_offset / NANOS,
    )


def _evaluated(v: EntityView, e: Evaluation) -> dict[str, Any]:
    """The fields ``EntityState`` and ``Decision`` share: an entity and its evaluation."""
    return {
        "kind": v.kind,
        "id": v.id,
        "host_id": v.host_id or "",
        "state": e.state,
        "runaway": e.runaway,
        "stuck": e.stuck,
        "hibernate": e.hibernate,
        "hibernate_at_unix_nano": e.hibernate_at or 0,
        "idle_since_unix_nano": e.idle_since,
        "reason": e.reason,
        "runaway_reason": e.runaway_reason,
        "stuck_reason": e.stuck_reason,
        "held_by": _holds(e.held_by, e.held_by),
    }


def state_message(s: Snapshot) -> query_pb2.EntityState:
    """A watcher's view of one entity's current state."""
    return query_pb2.EntityState(**_evaluated(s.view, s.evaluation))


def transition_message(t: Transition) -> query_pb2.Transition:
    return query_pb2.Transition(
        at_unix_nano=t.at,
        kind=t.kind,
        id=t.id,
        host_id=t.host_id or "",
        field=t.field,
        previous=t.previous,
        current=t.current,
        reason=t.reason,
        hibernate_at_unix_nano=t.hibernate_at or 0,
    )


def decision_message(d: Decision) -> query_pb2.Decision:
    """A :class:`~lastactive.collector.policy.Decision` as ``lastactive.v1.Decision`` message."""
    return query_pb2.Decision(**_evaluated(d.view, d.evaluation))


class ActivityQueryServicer(query_pb2_grpc.ActivityQueryServicer):  # type: ignore[misc]
    """``lastactive.v1.ActivityQuery`` over the in-memory state (see ``query.proto``)."""

    def __init__(self, core: Core) -> None:
        self._core = core
        self._state = core.state
        self._clock = core.clock
        self._policy = core.policy
        self._credentials = core.credentials

    async def _readable(self, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Authorize a read, and refuse it UNAVAILABLE with RetryInfo while the stored state
        is loading (:mod:`lastactive.collector._startup`)."""
        await authorize(self._credentials, context, Scope.READ)
        reason = self._core.loading()
        if reason is not None:
            await context.abort_with_status(unavailable(reason, LOADING_RETRY_S))

    async def Watch(
        self, request: query_pb2.WatchRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[query_pb2.WatchEvent]:
        core = self._core
        await self._readable(context)
        try:
            events = await core.open_watch(
                request.host_id or None, request.session_id or None, request.after_event_id or None
            )
        except WatchLimitError as exc:
            await context.abort_with_status(unavailable(str(exc), 5.0))
        except StoreUnavailableError as exc:  # a replica reads the snapshot from the store
            await context.abort_with_status(unavailable(str(exc), 1.0))
        try:
            async for event in events:
                match event:
                    case SnapshotEvent(states, more, event_id):
                        yield query_pb2.WatchEvent(
                            snapshot=query_pb2.Snapshot(
                                states=[state_message(s) for s in states], more=more
                            ),
                            event_id=event_id or "",
                        )
                    case TransitionEvent(transition, event_id):
                        yield query_pb2.WatchEvent(
                            transition=transition_message(transition), event_id=event_id
                        )
                    case ResyncEvent():
                        yield query_pb2.WatchEvent(resync=query_pb2.Resync())
                    case KeepaliveEvent():
                        pass  # HTTP/2 pings keep a gRPC stream alive
        except StoreUnavailableError as exc:  # a later snapshot page: the client retries
            await context.abort_with_status(unavailable(str(exc), 1.0))

    async def Decisions(
        self, request: query_pb2.DecisionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.DecisionsResponse:
        await self._readable(context)
        if not 0 <= request.within_seconds <= MAX_DURATION_S:  # also NaN
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"within_seconds must be in [0, {MAX_DURATION_S:.0f}]",
            )
        within = int(request.within_seconds * NANOS)
        try:
            out = await self._core.decisions(within, page_size(request.limit))
        except StoreUnavailableError as exc:
            await context.abort_with_status(
                unavailable(str(exc), self._core.admission.retry_delay())
            )
        return query_pb2.DecisionsResponse(
            hibernate=await on_loop(mapped(decision_message, out.hibernate, ENCODE_SLICE)),
            due_soon=await on_loop(mapped(decision_message, out.due_soon, ENCODE_SLICE)),
            held=await on_loop(mapped(decision_message, out.held, ENCODE_SLICE)),
            truncated=out.truncated,
        )

    async def ListSessions(
        self, request: query_pb2.ListSessionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.ListSessionsResponse:
        await self._readable(context)
        now = self._clock()
        try:
            views, token = await self._core.sessions_page(
                now, request.host_id or None, request.limit, request.trusted_only,
                request.page_token,
            )  # fmt: skip
        except PageTokenError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except StoreUnavailableError as exc:
            await context.abort_with_status(
                unavailable(str(exc), self._core.admission.retry_delay())
            )
        evaluate = self._policy.evaluate
        sessions = await on_loop(
            mapped(lambda v: entity_message(v, evaluate(v, now)), views, ENCODE_SLICE)
        )
        return query_pb2.ListSessionsResponse(sessions=sessions, next_page_token=token)

    async def GetSession(
        self, request: query_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.Entity:
        return await self._get(Kind.SESSION, request, context)

    async def GetHost(
        self, request: query_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.Entity:
        return await self._get(Kind.HOST, request, context)

    async def _get(
        self, kind: Kind, request: query_pb2.GetRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> query_pb2.Entity:
        await self._readable(context)
        await self._core.fetch(kind, request.id)
        now = self._clock()
        v = self._state.get(kind, request.id, now, request.trusted_only)
        if v is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no {kind} with id {request.id!r}")
        assert v is not None
        return entity_message(v, self._policy.evaluate(v, now))


async def start_grpc(
    host: str,
    port: int,
    core: Core,
    max_request_bytes: int,
    tls: grpc.ServerCredentials | None = None,
    loaded: asyncio.Event | None = None,
) -> tuple[grpc.aio.Server, int, Callable[[], Awaitable[None]]]:
    """Start the gRPC server on ``host:port`` (0: any free port), over TLS with ``tls``.
    Health checking reports ``lastactive.v1.ActivityQuery`` NOT_SERVING until ``loaded`` is
    set (the stored state is loading; the OTLP services serve meanwhile).

    Returns:
        ``(server, bound port, stop)``; ``await stop()`` reports NOT_SERVING and stops
        gracefully.
    Raises:
        RuntimeError: the port cannot be bound.
    """
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_request_bytes),
            ("grpc.max_send_message_length", max_request_bytes),
            # grpcio sets SO_REUSEPORT by default: a second collector would silently share the
            # port and split the traffic. Fail to bind instead.
            ("grpc.so_reuseport", 0),
        ]
    )
    server.add_generic_rpc_handlers(tuple(_otlp_handler(signal, core) for signal in SIGNALS))
    query_pb2_grpc.add_ActivityQueryServicer_to_server(ActivityQueryServicer(core), server)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    served = (
        "lastactive.v1.ActivityQuery",
        *(signal.service for signal in SIGNALS),
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
    )
    reflection.enable_server_reflection((*served, reflection.SERVICE_NAME), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = (
        server.add_insecure_port(address) if tls is None else server.add_secure_port(address, tls)
    )
    if bound == 0:
        raise RuntimeError(f"cannot bind gRPC to {host}:{port}")
    await server.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    for name in ("", *served):
        await health.set(name, serving)
    announcing: asyncio.Task[None] | None = None
    if loaded is not None and not loaded.is_set():
        query = served[0]
        await health.set(query, health_pb2.HealthCheckResponse.NOT_SERVING)

        async def announce() -> None:
            await loaded.wait()
            await health.set(query, serving)

        announcing = asyncio.create_task(announce(), name="lastactive-grpc-loaded")

    async def stop() -> None:
        if announcing is not None:
            announcing.cancel()
        await health.enter_graceful_shutdown()
        await server.stop(grace=0.1)  # watch streams end when the hub closes

    return server, bound, stop
