"""``GET /metrics``: the collector's own metrics (:mod:`lastactive.collector._metrics` builds them
at scrape) in the Prometheus text format or OpenMetrics as the ``Accept`` header asks, gzip when
``Accept-Encoding`` allows, ``name[]`` filters: what prometheus_client's own ASGI app serves,
with its encoders. Scope ``read`` when the collector has credentials.

The metrics are collected on the event loop (they read state, which changes there), after the
registry's ``prepare`` ranked the producing sessions a slice at a time, and formatted in a
worker thread: at 1000 hosts the text of ~3000 series takes ~10 ms, which would otherwise hold
every other request (issue 15).
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Iterable

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from lastactive.collector._auth import Credentials
from lastactive.collector._auth import Scope as AuthScope
from lastactive.collector._http._auth import RefusedError, authorize
from lastactive.collector._metrics import FleetRegistry

__all__ = ["MetricsApp"]


class _Collected:
    """Metric families already collected, for an encoder to format anywhere."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def _exposition(
    collected: _Collected, accept: str, accept_encoding: str
) -> tuple[bytes, dict[str, str]]:
    """The body and headers for ``collected``, encoded as ``accept`` asks (prometheus_client's
    choice of format) and gzipped when ``accept_encoding`` allows."""
    encoder, content_type = choose_encoder(accept)
    body = encoder(collected)
    headers = {"Content-Type": content_type}
    if gzip_accepted(accept_encoding):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return body, headers


class MetricsApp:
    """An ASGI app: ``registry``'s metrics to callers ``credentials`` allow to ``read``."""

    def __init__(self, registry: FleetRegistry, credentials: Credentials) -> None:
        self._registry = registry
        self._credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope)
        try:
            authorize(self._credentials, request, AuthScope.READ)
        except RefusedError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            await JSONResponse({"detail": str(exc)}, exc.status, headers)(scope, receive, send)
            return
        names = request.query_params.getlist("name[]")
        source = self._registry.restricted_registry(names) if names else self._registry
        await self._registry.prepare()  # the bulk of the work, a slice at a time
        collected = _Collected(list(source.collect()))  # on the loop, where state changes
        body, headers = await asyncio.to_thread(
            _exposition,
            collected,
            ",".join(request.headers.getlist("accept")),
            ",".join(request.headers.getlist("accept-encoding")),
        )
        await Response(body, headers=headers)(scope, receive, send)
