"""``GET /healthz`` (the process answers) and ``GET /readyz`` (it can take work: state loaded,
store committing), for Kubernetes probes, systemd and load balancers; open without credentials,
as the gRPC health service (``grpc.health.v1.Health``) on the other port. :func:`loaded`: the
dependency that holds reads back while the stored state loads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse

from lastactive.collector._startup import LOADING_RETRY_S

_RETRY_AFTER_S = 5


def health_router(unready: Callable[[], str | None]) -> APIRouter:
    """The two probes; ``unready`` says why the service cannot take work (``None``: it can):
    the state is still loading, or the store fails its commits."""
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


def loaded(loading: Callable[[], str | None]) -> Callable[[], Awaitable[None]]:
    """A FastAPI dependency for reads: 503 with ``Retry-After`` while ``loading`` says why
    they must wait (:mod:`lastactive.collector._startup`)."""

    async def dependency() -> None:
        reason = loading()
        if reason is not None:
            raise HTTPException(503, reason, headers={"Retry-After": f"{LOADING_RETRY_S:.0f}"})

    return dependency
