"""Credentials on the HTTP edge: ``Authorization: Bearer <token>`` (RFC 6750) or the
verified client certificate, checked by :class:`~lastactive.collector._auth.Credentials`.

401 carries ``WWW-Authenticate: Bearer``; 403 says which scope was missing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from lastactive.collector._auth import (
    Credentials,
    ForbiddenError,
    Principal,
    Scope,
    UnauthenticatedError,
)
from lastactive.collector._tls import CLIENT_CERTIFICATE_SCOPE_KEY

__all__ = ["RefusedError", "authorize", "requires"]

_BEARER = HTTPBearer(
    auto_error=False,
    description="A token from `lastactive token create` (needed when the collector has an "
    "auth file).",
)


class RefusedError(Exception):
    """A call without the credential it needs: ``status`` 401 or 403 and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def authorize(credentials: Credentials, request: Request, *scopes: Scope) -> Principal:
    """The caller's principal, holding one of ``scopes``.

    Raises:
        RefusedError: 401 (no valid credential) or 403 (none of ``scopes``); counted.
    """
    if not credentials.enabled:
        return credentials.authenticate(None, None)
    try:
        principal = credentials.authenticate(
            request.headers.get("authorization"), request.scope.get(CLIENT_CERTIFICATE_SCOPE_KEY)
        )
        principal.require_any(scopes)
    except UnauthenticatedError as exc:
        credentials.refuse("http", exc)
        raise RefusedError(401, str(exc)) from None
    except ForbiddenError as exc:
        credentials.refuse("http", exc)
        raise RefusedError(403, str(exc)) from None
    return principal


def requires(credentials: Credentials, *scopes: Scope) -> Callable[..., Awaitable[Principal]]:
    """A FastAPI dependency: :func:`authorize` as ``HTTPException`` (the bearer scheme shows
    in OpenAPI); the principal is also left in ``request.state.principal``."""

    async def dependency(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> Principal:
        try:
            principal = authorize(credentials, request, *scopes)
        except RefusedError as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
            raise HTTPException(exc.status, str(exc), headers=headers) from None
        request.state.principal = principal
        return principal

    return dependency
