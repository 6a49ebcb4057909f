"""Durable state behind one small interface.

The collector keeps state in memory and writes changed entities behind, in batches; a store only
loads everything at start and saves batches of :class:`~lastactive.collector._state.EntityRecord`.
Saving merges: times are max-registers (``first_seen`` a min-register), so a save never moves a
stored time backwards, whatever order batches or replicas write in.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from lastactive.collector._state import EntityRecord

__all__ = ["SqliteStore", "Store"]


class Store(Protocol):
    """Persistence of entity records."""

    def load(self) -> list[EntityRecord]:
        """Every stored record."""
        ...

    def save(self, records: Sequence[EntityRecord]) -> None:
        """Merge ``records`` in, all or nothing (one transaction). Raises on failure."""
        ...

    def delete(self, keys: Sequence[tuple[str, str]]) -> None:
        """Remove the entities with these ``(kind, id)`` keys (retention purge)."""
        ...

    def close(self) -> None:
        """Release the store. Idempotent."""
        ...


_SCHEMA_VERSION = 3
_SCHEMA = """
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
    PRIMARY KEY (kind, id)
) WITHOUT ROWID;
"""

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
}

# The whole merge happens in SQL, one statement per row: max/min for the scalar times, and a
# per-source max for the JSON map of source -> ns; attributes merge key by key (RFC 7396).
_UPSERT = """
INSERT INTO entities VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
ON CONFLICT (kind, id) DO UPDATE SET
    host_id = coalesce(excluded.host_id, host_id),
    agent_id = coalesce(excluded.agent_id, agent_id),
    service_name = coalesce(excluded.service_name, service_name),
    first_seen = min(first_seen, excluded.first_seen),
    last_seen = max(last_seen, excluded.last_seen),
    sources = (
        SELECT json_group_object(key, t) FROM (
            SELECT key, max(value) AS t FROM (
                SELECT key, value FROM json_each(entities.sources)
                UNION ALL
                SELECT key, value FROM json_each(excluded.sources)
            ) GROUP BY key
        )
    ),
    input_bytes = max(input_bytes, excluded.input_bytes),
    output_bytes = max(output_bytes, excluded.output_bytes),
    pid = coalesce(excluded.pid, pid),
    exit_code = coalesce(excluded.exit_code, exit_code),
    holds = excluded.holds,
    status = CASE WHEN excluded.status_time >= status_time THEN excluded.status ELSE status END,
    task = CASE WHEN excluded.status_time >= status_time
                THEN coalesce(excluded.task, task) ELSE task END,
    result = CASE WHEN excluded.status_time >= status_time
                  THEN coalesce(excluded.result, result) ELSE result END,
    status_time = max(status_time, excluded.status_time),
    attributes = json_patch(attributes, excluded.attributes)
"""


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
        # Used by one thread at a time: the loader at start, then the flusher's worker.
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
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
        rows = self._db.execute(
            "SELECT kind, id, host_id, agent_id, service_name, first_seen, last_seen, sources,"
            " input_bytes, output_bytes, pid, exit_code, holds, status, status_time, task, result,"
            " attributes FROM entities"
        )
        out = []
        for row in rows:
            (kind, id_, host, agent, service, first, last, sources, inb, outb, pid, code,
             holds, status, status_time, task, result, attributes) = row  # fmt: skip
            out.append(
                EntityRecord(
                    kind,
                    id_,
                    host,
                    agent,
                    service,
                    first,
                    last,
                    tuple(json.loads(sources).items()),
                    inb,
                    outb,
                    pid,
                    code,
                    tuple((key, t, until) for key, t, until in json.loads(holds)),
                    status,
                    status_time,
                    task,
                    result,
                    tuple(json.loads(attributes).items()),
                )
            )
        return out

    def save(self, records: Sequence[EntityRecord]) -> None:
        if not records:
            return
        rows = [
            (
                r.kind,
                r.id,
                r.host_id,
                r.agent_id,
                r.service_name,
                r.first_seen,
                r.last_seen,
                json.dumps(dict(r.sources), separators=(",", ":")),
                r.input_bytes,
                r.output_bytes,
                r.pid,
                r.exit_code,
                json.dumps(r.holds, separators=(",", ":")),
                r.status,
                r.status_time,
                r.task,
                r.result,
                json.dumps(dict(r.attributes), separators=(",", ":")),
            )
            for r in records
        ]
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_UPSERT, rows)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def delete(self, keys: Sequence[tuple[str, str]]) -> None:
        if not keys:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("DELETE FROM entities WHERE kind=? AND id=?", keys)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._db.close()
