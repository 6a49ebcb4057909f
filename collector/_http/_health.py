"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can take work: state loaded,
store committing), for Kubernetes probes, systemd and load balancers; open without credentials,
as the gRPC health service (``grpc.health.v1.Health``) on the other port."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

_RETRY_AFTER_S = 5


def health_router(unready: Callable[[], str | None]) -> APIRouter:
    """The two probes; ``unready`` says why the service cannot take work (``None``: it can).
    State is loaded before the HTTP server starts, so serving at all means it is loaded."""
    router = APIRouter(tags=["health"])

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the event loop answers."""
        return {"status": "ok"}

    not_ready: dict[int | str, dict[str, Any]] = {
        503: {"description": "not ready (the reason says why), with Retry-After"}
    }

    @router.get("/readyz", responses=not_ready)
    async def readyz() -> JSONResponse:
        """Readiness: state loaded and the store's last commit succeeded."""
        reason = unready()
        if reason is None:
            return JSONResponse({"status": "ready"})
        return JSONResponse(
            {"status": "unready", "reason": reason},
            status_code=503,
            headers={"Retry-After": str(_RETRY_AFTER_S)},
        )

    return router
