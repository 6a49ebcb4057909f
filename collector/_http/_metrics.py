"""``GET /metrics``: the collector's own metrics (:mod:`lastactive.collector._metrics` builds them
at scrape), served by prometheus_client's ASGI app: the Prometheus text format or OpenMetrics as
the ``Accept`` header asks, gzip when ``Accept-Encoding`` allows, ``name[]`` filters. Scope
``read`` when the collector has credentials."""

from __future__ import annotations

from prometheus_client import make_asgi_app
from prometheus_client.registry import CollectorRegistry
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from lastactive.collector._auth import Credentials
from lastactive.collector._auth import Scope as AuthScope
from lastactive.collector._http._auth import RefusedError, authorize

__all__ = ["MetricsApp"]


class MetricsApp:
    """An ASGI app: ``registry``'s metrics to callers ``credentials`` allow to ``read``."""

    def __init__(self, registry: CollectorRegistry, credentials: Credentials) -> None:
        self._inner = make_asgi_app(registry)
        self._credentials = credentials

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                authorize(self._credentials, Request(scope), AuthScope.READ)
            except RefusedError as exc:
                headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
                await JSONResponse({"detail": str(exc)}, exc.status, headers)(scope, receive, send)
                return
        await self._inner(scope, receive, send)
