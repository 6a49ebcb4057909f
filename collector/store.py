"""Durable state behind one small interface: :class:`Store`'s ``load_page``, ``save``,
``delete`` and ``close``; :func:`open_store` opens the one the settings name.

The collector keeps state in memory and commits what each export changed before it answers
(group commit: one transaction for everything received meanwhile); a store loads what it holds
at start, saves batches of :class:`~lastactive.collector._record.EntityRecord` with the counter
baselines (:class:`~lastactive.collector._record.StreamRecord`) they were counted from, and
deletes what the retention purge forgot. Saving merges by
:func:`~lastactive.collector._record.merge` (times are max-registers, ``first_seen`` a
min-register), so a save never moves a stored time backwards, whatever order batches arrive in.
Every store passes ``tests/collector/test_store_contract.py``.

* :class:`SqliteStore` (``lastactive.collector._sqlite``): the default, one file, no server.
* :class:`PostgresStore` (``lastactive.collector._postgres``): ``--store postgresql://...``,
  with the optional extra ``lastactive[postgresql]`` (psycopg 3 and its pool).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lastactive.collector._record import Counted, EntityRecord, StreamRecord
from lastactive.collector._sqlite import SqliteStore

if TYPE_CHECKING:
    from lastactive.collector._postgres import PostgresStore

__all__ = [
    "POSTGRES_SCHEMES",
    "PostgresStore",
    "SqliteStore",
    "Store",
    "StoreError",
    "check_postgres_url",
    "open_store",
    "without_password",
]

POSTGRES_SCHEMES = ("postgresql://", "postgres://")
"""How a PostgreSQL connection URL begins (libpq's two spellings)."""


class StoreError(RuntimeError):
    """The store cannot be opened: unreachable, refused, or not a lastactive database of a
    version this one can use (the message says which)."""


class Store(Protocol):
    """Persistence of entity records."""

    def load(self) -> list[EntityRecord]:
        """Every stored record; a row that is not a valid record is logged and skipped."""
        ...

    def load_page(
        self, after: tuple[str, str] | None, size: int
    ) -> tuple[list[EntityRecord], tuple[str, str] | None]:
        """Up to ``size`` stored rows in ``(kind, id)`` order after the key ``after``
        (``None``: from the first), as records (a row that is not a valid record is logged
        and skipped), and the key to ask the next page after (``None``: this was the last).
        May run in another thread while :meth:`save` runs, and must not wait for it."""
        ...

    def load_streams(self) -> list[StreamRecord]:
        """Every stored counter baseline."""
        ...

    def save(
        self,
        records: Sequence[EntityRecord],
        streams: Sequence[StreamRecord] = (),
        counted: Counted | None = None,
    ) -> int:
        """Merge ``records`` in by :func:`~lastactive.collector._record.merge` and ``streams``
        by their latest ``time``, in one transaction. A record the store cannot hold (a value
        out of its range) is logged and skipped, so one bad record never fails the others.
        ``counted``: what a replica sharing the store counted since its last commit, added to
        the stored totals (``ActivityState.additive_io``; :class:`~lastactive.collector.
        _record.Counted`).

        Returns:
            How many records were skipped.
        Raises:
            ValueError: ``counted`` given to a store no replicas share (SQLite).
            Exception: the store failed (disk, connection); nothing of the batch is saved.
        """
        ...

    def delete(self, keys: Sequence[tuple[str, str]], streams_before: int = 0) -> None:
        """Remove the entities with these ``(kind, id)`` keys, and the counter baselines whose
        last point is at or before ``streams_before`` (ns; retention purge)."""
        ...

    def close(self) -> None:
        """Release the store. Idempotent."""
        ...


def check_postgres_url(url: str) -> str:
    """``url`` when it is a PostgreSQL connection URL (:data:`POSTGRES_SCHEMES`).

    Raises:
        ValueError: it is not (the settings report it as an invalid ``store``).
    """
    if not url.startswith(POSTGRES_SCHEMES):
        raise ValueError(f"expected a postgresql:// URL, got {url.split(':', 1)[0]!r}")
    return url


def open_store(db: Path, url: str | None = None) -> Store:
    """The store to serve from: PostgreSQL at ``url`` when one is given, else SQLite at ``db``.

    Raises:
        StoreError: ``url`` is no PostgreSQL URL, the optional extra is not installed, or
            the database cannot be opened.
        sqlite3.Error: the SQLite file cannot be opened.
    """
    if url is None:
        return SqliteStore(db)
    try:
        check_postgres_url(url)
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    try:
        from lastactive.collector._postgres import PostgresStore
    except ImportError as exc:
        raise StoreError(
            f"a PostgreSQL store needs the optional extra: pip install 'lastactive[postgresql]' "
            f"({exc})"
        ) from None
    return PostgresStore(url)


def without_password(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for logs and messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    netloc = f"{parts.username or ''}:***@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def __getattr__(name: str) -> Any:  # PEP 562: psycopg is imported only when asked for
    if name == "PostgresStore":
        from lastactive.collector._postgres import PostgresStore

        return PostgresStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
