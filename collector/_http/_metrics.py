"""``GET /metrics``: the collector's own metrics, Prometheus text exposition
(:mod:`lastactive.collector._metrics` builds them at scrape)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry


def metrics_router(registry: CollectorRegistry) -> APIRouter:
    """``GET /metrics`` from ``registry``."""
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", response_class=Response)
    async def metrics() -> Response:
        """The collector's own metrics, Prometheus text exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router
