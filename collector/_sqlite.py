"""The default :class:`~lastactive.collector.store.Store`: one SQLite file (WAL mode).

Its columns and upsert are derived from the record's fields, with one SQL merge rule per column
(``_MERGE_SQL``, :func:`~lastactive.collector._record.merge` in SQL); the schema carries its
version in ``PRAGMA user_version`` and older files are migrated in place.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Final

from lastactive.collector._record import (
    HOLD_GRACE_NS,
    RECORD_FIELDS,
    Counted,
    EntityRecord,
    StreamRecord,
)
from lastactive.collector._rows import ROW_ERRORS, record_of, row_of

__all__ = ["SqliteStore"]

_log = logging.getLogger(__name__)

_LATER: Final = (
    "CASE WHEN excluded.status IS NOT NULL AND excluded.status_time >= status_time "
    "THEN {} ELSE {} END"
)
"""A status field: from the incoming record when its status is as recent or more."""

_SCHEMA_VERSION = 5
_STREAMS = """
CREATE TABLE IF NOT EXISTS streams (  -- cumulative counter baselines (StreamRecord)
    key TEXT PRIMARY KEY,
    start INTEGER NOT NULL,  -- ns, the reporter's clock
    time INTEGER NOT NULL,   -- ns, the reporter's clock
    value NOT NULL           -- INTEGER or REAL, as sent
) WITHOUT ROWID;
"""
_STREAM_UPSERT: Final = (
    "INSERT INTO streams (key, start, time, value) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET start = excluded.start, time = excluded.time, "
    "value = excluded.value WHERE excluded.time >= streams.time"
)
_SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS entities (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    host_id TEXT,
    agent_id TEXT,
    service_name TEXT,
    first_seen INTEGER NOT NULL,    -- ns since the Unix epoch, UTC
    last_seen INTEGER NOT NULL,     -- ns
    sources TEXT NOT NULL,          -- JSON {source: ns}
    input_bytes INTEGER NOT NULL,
    output_bytes INTEGER NOT NULL,
    pid INTEGER,
    exit_code INTEGER,
    holds TEXT NOT NULL DEFAULT '[]',  -- JSON [[kind:id, reported ns, until ns], ...]
    status TEXT,                       -- active | completed | error (agent events)
    status_time INTEGER NOT NULL DEFAULT 0,
    task TEXT,
    result TEXT,
    attributes TEXT NOT NULL DEFAULT '{}',  -- JSON {resource attribute: value}, policy-selected
    turn TEXT,                         -- working | waiting (an agent session's turn)
    turn_time INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""
    + _STREAMS
)

_MIGRATIONS = {
    # from version: the statements that bring it to the next one
    1: [
        "ALTER TABLE entities ADD COLUMN holds TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE entities ADD COLUMN status TEXT",
        "ALTER TABLE entities ADD COLUMN status_time INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE entities ADD COLUMN task TEXT",
        "ALTER TABLE entities ADD COLUMN result TEXT",
    ],
    2: ["ALTER TABLE entities ADD COLUMN attributes TEXT NOT NULL DEFAULT '{}'"],
    3: [
        "ALTER TABLE entities ADD COLUMN turn TEXT",
        "ALTER TABLE entities ADD COLUMN turn_time INTEGER NOT NULL DEFAULT 0",
    ],
    4: [_STREAMS],
}

# collector._record.merge, column by column, in SQL: one statement per row, no read-back. In
# an upsert's SET every bare column name is the stored value and ``excluded.*`` the incoming one.
_GRACE_NS = HOLD_GRACE_NS
_MERGE_SQL: Final = {
    "host_id": "coalesce(excluded.host_id, host_id)",
    "agent_id": "coalesce(excluded.agent_id, agent_id)",
    "service_name": "coalesce(excluded.service_name, service_name)",
    "first_seen": "min(first_seen, excluded.first_seen)",
    "last_seen": "max(last_seen, excluded.last_seen)",
    "sources": """(
        SELECT json_group_object(key, t) FROM (
            SELECT key, max(value) AS t FROM (
                SELECT key, value FROM json_each(entities.sources)
                UNION ALL
                SELECT key, value FROM json_each(excluded.sources)
            ) GROUP BY key
        )
    )""",
    "input_bytes": "max(input_bytes, excluded.input_bytes)",
    "output_bytes": "max(output_bytes, excluded.output_bytes)",
    "pid": "coalesce(excluded.pid, pid)",
    "exit_code": "coalesce(excluded.exit_code, exit_code)",
    "holds": f"""CASE WHEN excluded.holds = '[]' THEN holds ELSE (
        WITH reported AS (
            SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS t,
                   json_extract(value, '$[2]') AS u
            FROM json_each(entities.holds)
            UNION ALL
            SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'),
                   json_extract(value, '$[2]')
            FROM json_each(excluded.holds)
        ), latest AS (
            SELECT k, t, u, row_number() OVER (PARTITION BY k ORDER BY t DESC, u DESC) AS n
            FROM reported
        )
        SELECT json_group_array(json_array(k, t, u)) FROM (
            SELECT k, t, u FROM latest
            WHERE n = 1 AND NOT (u > 0 AND u < (SELECT max(t) FROM reported) - {_GRACE_NS})
        )
    ) END""",
    "status": _LATER.format("excluded.status", "status"),
    "status_time": "max(status_time, excluded.status_time)",
    "task": _LATER.format("coalesce(excluded.task, task)", "task"),
    "result": _LATER.format("coalesce(excluded.result, result)", "result"),
    "attributes": "json_patch(attributes, excluded.attributes)",
    "turn": (
        "CASE WHEN excluded.turn IS NOT NULL AND excluded.turn_time >= turn_time "
        "THEN excluded.turn ELSE turn END"
    ),
    "turn_time": "max(turn_time, excluded.turn_time)",
}

_KEY: Final = ("kind", "id")
_UPSERT: Final = (
    f"INSERT INTO entities ({', '.join(RECORD_FIELDS)}) "
    f"VALUES ({', '.join('?' for _ in RECORD_FIELDS)}) "
    f"ON CONFLICT ({', '.join(_KEY)}) DO UPDATE SET "
    + ", ".join(f"{column} = {_MERGE_SQL[column]}" for column in RECORD_FIELDS[2:])
)


_COLUMNS: Final = ", ".join(RECORD_FIELDS)
_FIRST_PAGE: Final = f"SELECT {_COLUMNS} FROM entities ORDER BY kind, id LIMIT ?"
_NEXT_PAGE: Final = (
    f"SELECT {_COLUMNS} FROM entities WHERE (kind, id) > (?, ?) ORDER BY kind, id LIMIT ?"
)


_VALUE_ERRORS: Final = (
    OverflowError, UnicodeError, ValueError, TypeError, sqlite3.DataError, sqlite3.IntegrityError,
    sqlite3.InterfaceError,
)  # fmt: skip
"""What a record's values (not the store) can make a write raise."""


class SqliteStore:
    """:class:`Store` on one SQLite file (WAL mode, one transaction per save).

    Args:
        path: the database file; its directory is created. ``:memory:`` works for tests.

    Raises:
        sqlite3.Error: the file cannot be opened or is not a lastactive database.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        # Used by one thread at a time (the flusher's worker; _lock for the rest); start-up
        # pages are read on _reader.
        self._db = self._connect()
        self._lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > _SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"{self.path}: schema version {version} is newer than this lastactive "
                f"({_SCHEMA_VERSION})"
            )
        if version == 0:
            self._db.executescript(_SCHEMA)
        else:
            for v in range(version, _SCHEMA_VERSION):
                for statement in _MIGRATIONS[v]:
                    self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._closed = False

    def load(self) -> list[EntityRecord]:
        with self._lock:
            return self._records(self._db.execute(f"SELECT {_COLUMNS} FROM entities"))

    def load_page(
        self, after: tuple[str, str] | None, size: int
    ) -> tuple[list[EntityRecord], tuple[str, str] | None]:
        # A file is read on a connection of its own (WAL: readers do not wait for the
        # writer); an in-memory database has only the one.
        memory = self.path == ":memory:"
        with self._lock if memory else contextlib.nullcontext():
            if self._reader is None:
                self._reader = self._db if memory else self._connect(read_only=True)
            query, args = (_FIRST_PAGE, (size,)) if after is None else (_NEXT_PAGE, (*after, size))
            rows = self._reader.execute(query, args).fetchall()
            following = (rows[-1][0], rows[-1][1]) if len(rows) == size else None
            if following is None:
                self._close_reader()
        return self._records(rows), following

    def _close_reader(self) -> None:
        if self._reader is not None and self._reader is not self._db:
            self._reader.close()
        self._reader = None

    def _connect(self, read_only: bool = False) -> sqlite3.Connection:
        if read_only:
            uri = f"{Path(self.path).resolve().as_uri()}?mode=ro"
            return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
        return sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)

    def _records(self, rows: Iterable[tuple[Any, ...]]) -> list[EntityRecord]:
        out = []
        for row in rows:
            try:
                out.append(record_of(row))
            except ROW_ERRORS as exc:
                _log.error("%s: skipping the unreadable row %r, %r: %s", self.path, *row[:2], exc)
        return out

    def load_streams(self) -> list[StreamRecord]:
        with self._lock:
            rows = self._db.execute("SELECT key, start, time, value FROM streams")
            return [StreamRecord(*row) for row in rows]

    def save(
        self,
        records: Sequence[EntityRecord],
        streams: Sequence[StreamRecord] = (),
        counted: Counted | None = None,
    ) -> int:
        if counted:
            raise ValueError("one process serves a SQLite store: its byte totals are merged")
        if not records and not streams:
            return 0
        with self._lock:
            return self._save(records, streams)

    def _save(self, records: Sequence[EntityRecord], streams: Sequence[StreamRecord]) -> int:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_STREAM_UPSERT, streams)  # ingest keeps every value within int64
            skipped = 0
            try:
                db.executemany(_UPSERT, [row_of(r) for r in records])
            except _VALUE_ERRORS:  # find the bad ones: the rest must not wait for them
                db.execute("ROLLBACK")
                db.execute("BEGIN IMMEDIATE")
                db.executemany(_STREAM_UPSERT, streams)
                for r in records:
                    try:
                        db.execute(_UPSERT, row_of(r))
                    except _VALUE_ERRORS as exc:
                        skipped += 1
                        _log.error("%s: not saving %s %r: %s", self.path, r.kind, r.id, exc)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return skipped

    def delete(self, keys: Sequence[tuple[str, str]], streams_before: int = 0) -> None:
        if not keys and not streams_before:
            return
        with self._lock:
            self._delete(keys, streams_before)

    def _delete(self, keys: Sequence[tuple[str, str]], streams_before: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM entities WHERE kind=? AND id=?", keys)
            db.execute("DELETE FROM streams WHERE time <= ?", (streams_before,))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._close_reader()
                self._db.close()
