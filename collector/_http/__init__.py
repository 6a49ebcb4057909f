"""The HTTP edge: one FastAPI app, one router module per resource.

=======================  ===============================================================
``_otlp``                OTLP/HTTP receivers: ``POST /v1/metrics``, ``/v1/logs``, ``/v1/traces``
``_query``               ``GET /v1/sessions[/{id}]``, ``/v1/hosts/{id}``, ``/v1/reporters``
``_agent_events``        ``POST /v1/agent-events`` (seed 004's webhook)
``_decisions``           ``GET /v1/decisions`` and ``GET /v1/watch`` (Server-Sent Events)
``_metrics``             ``GET /metrics`` (Prometheus)
``_health``              ``GET /healthz``, ``GET /readyz`` (probes; no credentials)
=======================  ===============================================================

Each only translates and delegates to the core (:class:`~lastactive.collector._core.Core`).
OpenAPI docs are at ``/docs`` (Swagger UI) and ``/redoc``, their assets served here (offline).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.routing import Route

import lastactive
from lastactive.collector._auth import Scope
from lastactive.collector._core import Core
from lastactive.collector._http._agent_events import agent_router
from lastactive.collector._http._auth import requires
from lastactive.collector._http._decisions import decisions_router
from lastactive.collector._http._health import health_router, loaded
from lastactive.collector._http._metrics import MetricsApp
from lastactive.collector._http._otlp import otlp_router
from lastactive.collector._http._query import query_router
from lastactive.collector._metrics import FleetRegistry

__all__ = ["create_app"]


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    """A query parameter or body FastAPI could not validate: 400 (not FastAPI's 422), the
    problems named as FastAPI names them."""
    assert isinstance(exc, RequestValidationError)
    problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
    return JSONResponse({"detail": f"invalid request: {problems}"}, status_code=400)


_REFUSALS: dict[int | str, dict[str, Any]] = {
    401: {"description": "no valid credential (the collector has an auth file)"},
    403: {"description": "the credential lacks the scope this needs"},
}


def create_app(
    core: Core, max_request_bytes: int, registry: FleetRegistry | None = None
) -> FastAPI:
    """The HTTP application: OTLP receivers, the query API, the agent webhook, decisions and
    watch, and ``/metrics`` when a ``registry`` is given."""
    app = FastAPIOffline(  # /docs and /redoc from assets served here, not a CDN
        title="lastactive",
        summary="Last-activity state per session, agent and host, from OpenTelemetry.",
        version=lastactive.__version__,
    )
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.include_router(health_router(core.unready))
    read = [Depends(requires(core.credentials, Scope.READ)), Depends(loaded(core.loading))]
    app.include_router(otlp_router(core, max_request_bytes), responses=_REFUSALS)
    app.include_router(
        query_router(
            core.state,
            core.policy,
            core.ingest.clocks,
            core.clock,
            core.fetch,
            core.sessions_page,
        ),
        dependencies=read,
        responses=_REFUSALS,
    )
    app.include_router(
        agent_router(core.ingest, core.policy, core.clock, core.durable, core.credentials),
        responses=_REFUSALS,
    )
    app.include_router(decisions_router(core), dependencies=read, responses=_REFUSALS)
    if registry is not None:
        # An ASGI app as a route's endpoint (not a function: Starlette calls it as ASGI).
        metrics = Route("/metrics", MetricsApp(registry, core.credentials), methods=["GET"])
        app.router.routes.append(metrics)
    return app
