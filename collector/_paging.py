"""Pages of "most recent first" lists, the same for HTTP and gRPC (AIP-158 style: a page size
and an opaque ``page_token``; an empty ``next_page_token`` on the last page), and pages of
reporters, the largest clock offset first.

A token is the sort key of the last session a page returned
(:func:`~lastactive.collector._state.page_key`), so the next page starts right after it
without the server keeping anything per client; a page costs what it returns (the recency
index, :mod:`lastactive.collector._recency`), or on one host a partial sort of the host's
sessions. A page of reporters looks at every reporter (a slice at a time) and keeps the first
``limit`` after the token's (:func:`~lastactive.collector._clocks.place`).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any, Final

from lastactive.collector._clocks import ReporterClock, ReporterClocks, ReporterPlace, place
from lastactive.collector._sliced import Sliced
from lastactive.collector._state import ActivityState, EntityView, PageKey, page_key

__all__ = [
    "DEFAULT_PAGE",
    "MAX_PAGE",
    "PageTokenError",
    "page_size",
    "reporters_page",
    "sessions_page",
    "stored_sessions_page",
]

DEFAULT_PAGE: Final = 1000
"""Sessions per page when the client asks for 0."""
MAX_PAGE: Final = 10_000
"""The most sessions one page returns (a larger ``limit`` is cut to this)."""


class PageTokenError(ValueError):
    """A ``page_token`` this collector did not make (400 / INVALID_ARGUMENT)."""


def sessions_page(
    state: ActivityState,
    now: int,
    host_id: str | None,
    limit: int,
    trusted_only: bool,
    page_token: str,
) -> Sliced[tuple[list[EntityView], str]]:
    """One page of sessions (see :meth:`ActivityState.sessions_sliced`, whose slices it is
    made in) and the next page's token ("" on the last page).

    Raises:
        PageTokenError: (at the first slice) ``page_token`` is not one this collector made.
    """
    size = page_size(limit)
    after = _after(page_token)
    views = yield from state.sessions_sliced(now, host_id, size + 1, trusted_only, after)
    return _cut(views, size)


async def stored_sessions_page(
    find: Callable[[int, PageKey | None], Awaitable[list[EntityView]]],
    limit: int,
    page_token: str,
) -> tuple[list[EntityView], str]:
    """:func:`sessions_page` from ``find(n, after)``: the first ``n`` sessions after a key
    (a replica's walk of the store:
    :meth:`~lastactive.collector._replica.Replica.sessions`).

    Raises:
        PageTokenError: ``page_token`` is not one this collector made.
    """
    size = page_size(limit)
    return _cut(await find(size + 1, _after(page_token)), size)


def _cut(views: list[EntityView], size: int) -> tuple[list[EntityView], str]:
    """``size + 1`` views asked for: the page and the next one's token."""
    if len(views) > size:
        return views[:size], _token_after(views[size - 1])
    return views, ""


def page_size(limit: int) -> int:
    """The page size for a requested ``limit`` (0: :data:`DEFAULT_PAGE`; at most
    :data:`MAX_PAGE`): also the most entries per list of ``/v1/decisions``."""
    return DEFAULT_PAGE if limit <= 0 else min(limit, MAX_PAGE)


def reporters_page(
    clocks: ReporterClocks, limit: int, skewed: bool, page_token: str
) -> Sliced[tuple[list[ReporterClock], str]]:
    """One page of reporters (or of those skewed), the largest clock offset first
    (:func:`~lastactive.collector._clocks.place`), made in the slices of
    :meth:`~lastactive.collector._clocks.ReporterClocks.page_sliced`, and the next page's token
    ("" on the last page).

    Raises:
        PageTokenError: (at the first slice) ``page_token`` is not one this collector made.
    """
    size = page_size(limit)
    found = yield from clocks.page_sliced(size + 1, _reporter_after(page_token), skewed)
    if len(found) > size:
        return found[:size], _token(place(found[size - 1]))
    return found, ""


def _token(key: tuple[int | str, ...]) -> str:
    """The token of the page that starts after the sort key ``key``."""
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _token_after(v: EntityView) -> str:
    """The token of the page that starts after ``v``."""
    return _token(page_key(v))


def _key(token: str, shape: tuple[type, ...]) -> list[Any]:
    """The sort key a ``page_token`` names, of ``shape`` (each part's type).

    Raises:
        PageTokenError: not a token this collector made (for this list).
    """
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not (
            isinstance(key, list)
            and len(key) == len(shape)
            and all(type(x) is t for x, t in zip(key, shape, strict=True))
        ):
            raise ValueError(token)
    except (ValueError, TypeError, UnicodeError) as exc:
        raise PageTokenError(f"invalid page_token {token[:40]!r}") from exc
    return key


def _after(token: str) -> PageKey | None:
    """The session sort key a ``page_token`` names (``None`` for the empty token).

    Raises:
        PageTokenError: not a token this collector made.
    """
    if not token:
        return None
    a, b, c, d = _key(token, (int, int, int, str))
    return (a, b, c, d)


def _reporter_after(token: str) -> ReporterPlace | None:
    """The reporter :func:`~lastactive.collector._clocks.place` a ``page_token`` names
    (``None`` for the empty token).

    Raises:
        PageTokenError: not a token this collector made.
    """
    if not token:
        return None
    a, b, c, d, e = _key(token, (int, str, str, str, str))
    return (a, b, c, d, e)
