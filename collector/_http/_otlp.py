"""OTLP/HTTP: ``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces`` (protobuf or JSON, gzip).

Bodies are read, decompressed and parsed by :mod:`lastactive.collector._otlp_body`, applied by
:class:`~lastactive.collector._ingest.Ingest`; errors are a ``google.rpc.Status`` in the
request's encoding (OTLP specification, "OTLP/HTTP Response").
"""

from __future__ import annotations

import contextlib
import math
import time

from fastapi import APIRouter, Request, Response
from google.rpc import code_pb2, status_pb2

from lastactive.collector._core import Core
from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._http._auth import RefusedError, authorize
from lastactive.collector._otlp_body import (
    CONTENT_JSON,
    BodyError,
    decompress,
    media_type,
    parse,
    serialize,
)
from lastactive.collector._otlp_signals import SIGNALS, OtlpSignal, export_response

_CODE_OF_STATUS = {
    400: code_pb2.INVALID_ARGUMENT,
    401: code_pb2.UNAUTHENTICATED,
    403: code_pb2.PERMISSION_DENIED,
    413: code_pb2.RESOURCE_EXHAUSTED,
    415: code_pb2.INVALID_ARGUMENT,
    503: code_pb2.UNAVAILABLE,
}


def _error(
    status: int,
    message: str,
    media: str,
    retry_after_s: float | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """OTLP/HTTP error: a ``google.rpc.Status`` in the request's encoding; with
    ``Retry-After`` (whole seconds, at least 1) when the client should retry (OTLP/HTTP
    Throttling)."""
    body = status_pb2.Status(code=_CODE_OF_STATUS.get(status, code_pb2.UNKNOWN), message=message)
    if retry_after_s is not None:
        headers = {"Retry-After": str(max(1, math.ceil(retry_after_s)))}
    return Response(serialize(body, media), status_code=status, media_type=media, headers=headers)


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

    stats, admission, credentials = core.stats, core.admission, core.credentials

    def route(signal: OtlpSignal) -> None:
        ingest, name = core.ingest, signal.name

        async def export(request: Request) -> Response:
            media = CONTENT_JSON
            began = time.perf_counter()
            try:
                principal = authorize(credentials, request, *signal.scopes)
            except RefusedError as exc:
                stats.error(name, "http", str(exc.status))
                with contextlib.suppress(BodyError):
                    media = media_type(request.headers.get("content-type"))
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                return _error(exc.status, str(exc), media, headers=headers)
            length = request.headers.get("content-length", "")
            size = int(length) if length.isdigit() and len(length) < 12 else 0
            if not admission.enter(size):
                stats.error(name, "http", "503")
                delay = admission.retry_delay()
                return _error(503, admission.refusal(delay), media, delay)
            try:
                media = media_type(request.headers.get("content-type"))
                raw = await read_body(request)
                body = decompress(raw, request.headers.get("content-encoding"), max_request_bytes)
                req = parse(body, media, signal.request)
                out = await core.apply(signal.sliced(ingest, req, principal))
                await core.durable()  # acknowledged means committed
            except BodyError as exc:
                stats.error(name, "http", str(exc.status))
                return _error(exc.status, str(exc), media)
            except StoreUnavailableError as exc:
                stats.error(name, "http", "503")
                return _error(503, str(exc), media, admission.retry_delay())
            finally:
                admission.leave(size)
            stats.ok(name, "http", out, time.perf_counter() - began)
            return Response(serialize(export_response(signal, out), media), media_type=media)

        path = f"/v1/{name}"
        router.add_api_route(path, export, methods=["POST"], summary=f"OTLP/HTTP {path}")

    for signal in SIGNALS:
        route(signal)
    return router
