"""A :class:`~lastactive.collector.store.Store` on PostgreSQL (``--store postgresql://...``),
with psycopg 3 and its connection pool (the optional extra ``lastactive[postgresql]``).

The tables are SQLite's, in PostgreSQL types: ``bigint`` times and byte totals (ns, int64),
``jsonb`` for the containers, ``numeric`` counter values (an integer stays exact). They live in
the connection's current schema (``?options=-csearch_path%3DNAME`` in the URL gives a
deployment a schema of its own). The schema's version is the row of ``lastactive_schema``;
migrations run under a transaction-scoped advisory lock, so replicas starting together migrate
once.

A save is one transaction: the batch, sorted by key (writers that lock rows in one order never
deadlock: SCALEOUT, "several writers on overlapping keys"), is copied into a temporary table
and merged by one ``INSERT ... SELECT ... ON CONFLICT DO UPDATE`` whose ``SET`` is
:func:`~lastactive.collector._record.merge` in SQL (``_MERGE_SQL``), so rows written by several
processes end as one process's would (SCALEOUT: COPY + one upsert costs 0.83-1.1x SQLite's
time).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from operator import attrgetter
from typing import Any, Final

import psycopg
from psycopg_pool import ConnectionPool

from lastactive.collector._activity import sources_of
from lastactive.collector._record import (
    HOLD_GRACE_NS,
    INT64_MAX,
    RECORD_FIELDS,
    Counted,
    EntityRecord,
    Heads,
    StreamRecord,
    StreamRise,
    count_rises,
)
from lastactive.collector._rows import JSON_FIELDS, ROW_ERRORS, record_of, row_of, stream_of
from lastactive.collector._shards import SHARDS
from lastactive.collector.store import StoreError
from lastactive.conventions import ActivityClass

__all__ = ["PostgresStore"]

_log = logging.getLogger(__name__)

_SCHEMA_VERSION: Final = 5
_ENGAGING: Final = sources_of(frozenset({ActivityClass.ENGAGEMENT}))
# A session's _state.page_key in SQL (times are positive: ingest clamps them).
_RECENCY: Final = "(-COALESCE(last_active, 0)), (-last_seen), (-first_seen), id"
_META: Final = "CREATE TABLE IF NOT EXISTS lastactive_schema (version integer NOT NULL)"
_SCHEMA: Final = (
    """CREATE TABLE entities (
        kind text NOT NULL,
        id text NOT NULL,
        host_id text,
        agent_id text,
        service_name text,
        first_seen bigint NOT NULL,          -- ns since the Unix epoch, UTC
        last_seen bigint NOT NULL,           -- ns
        sources jsonb NOT NULL DEFAULT '{}', -- {source: ns}
        input_bytes bigint NOT NULL DEFAULT 0,
        output_bytes bigint NOT NULL DEFAULT 0,
        pid bigint,
        exit_code bigint,
        holds jsonb NOT NULL DEFAULT '[]',   -- [[kind:id, reported ns, until ns], ...]
        status text,                         -- active | completed | error
        status_time bigint NOT NULL DEFAULT 0,
        task text,
        result text,
        attributes jsonb NOT NULL DEFAULT '{}',
        turn text,                           -- working | waiting
        turn_time bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (kind, id)
    )""",
    """CREATE TABLE streams (  -- cumulative counter baselines (StreamRecord)
        key text PRIMARY KEY,
        start bigint NOT NULL,  -- ns, the reporter's clock
        time bigint NOT NULL,   -- ns, the reporter's clock
        value numeric NOT NULL  -- as sent: an integer stays exact
    )""",
)
_MIGRATIONS: Final[dict[int, tuple[str, ...]]] = {
    1: (  # replicas (lastactive.collector._pg_cluster): shards, leases, conditions, outbox
        # Which of SHARDS an entity belongs to: _shards.shard_of, the same md5 in SQL.
        f"""ALTER TABLE entities ADD COLUMN shard smallint GENERATED ALWAYS AS
            ((('x' || substr(md5(kind || ':' || id), 1, 8))::bit(32)::int & {SHARDS - 1}))
            STORED""",
        # The transaction that last wrote the row: a shard's owner reads what changed since
        # its last read behind the visibility horizon (_pg_cluster.PostgresCluster.changes).
        "ALTER TABLE entities ADD COLUMN txid xid8 NOT NULL DEFAULT pg_current_xact_id()",
        "CREATE INDEX entities_shard_txid ON entities (shard, txid)",
        """CREATE TABLE emitted (  -- the condition last emitted per entity (by its owner)
            kind text NOT NULL,
            id text NOT NULL,
            condition text NOT NULL,  -- _transitions.condition_text
            PRIMARY KEY (kind, id)
        )""",
        """CREATE TABLE shards (  -- leases: who evaluates which entities' transitions
            shard smallint PRIMARY KEY,
            owner text,
            epoch bigint NOT NULL DEFAULT 0,  -- +1 at each claim
            expires timestamptz NOT NULL DEFAULT '-infinity'  -- the database's clock
        )""",
        f"INSERT INTO shards (shard) SELECT generate_series(0, {SHARDS - 1})",
        """CREATE TABLE replicas (  -- heartbeats: the live replicas share the shards
            name text PRIMARY KEY,
            seen timestamptz NOT NULL
        )""",
        """CREATE TABLE outbox (  -- every transition, in the order watchers get them
            seq bigint PRIMARY KEY,  -- from outbox_seq: commit order
            at bigint NOT NULL,      -- ns
            kind text NOT NULL,
            id text NOT NULL,
            host_id text,
            field text NOT NULL,
            previous text NOT NULL,
            current text NOT NULL,
            reason text NOT NULL,
            hibernate_at bigint      -- ns
        )""",
        "CREATE TABLE outbox_seq (last bigint NOT NULL)",
        "INSERT INTO outbox_seq VALUES (0)",
        # The outbox's name in event ids: an id from another database is not resumed.
        "ALTER TABLE lastactive_schema ADD COLUMN cluster text NOT NULL "
        "DEFAULT substr(md5(random()::text), 1, 8)",
    ),
    2: (  # a stream's last point of the run before its last reset (_record.count_rises)
        "ALTER TABLE streams ADD COLUMN prev_start bigint, ADD COLUMN prev_time bigint, "
        "ADD COLUMN prev_value numeric",
    ),
    3: (  # the owner's deadline and held flag per entity: decisions on any replica
        # (_pg_cluster.PostgresCluster.by_deadline, .held)
        "ALTER TABLE emitted ADD COLUMN deadline bigint, "  # ns, never later than its own
        "ADD COLUMN held boolean NOT NULL DEFAULT false",
        "CREATE INDEX emitted_deadline ON emitted (deadline, kind, id) WHERE deadline IS NOT NULL",
        "CREATE INDEX emitted_held ON emitted (kind, id) WHERE held",
        # Sessions most recent first (_state.page_key) on any replica (PostgresCluster.recent):
        # last_active is the latest engagement source (the conventions' engagement sources
        # when this migration was written; a change to them needs a migration).
        "ALTER TABLE entities ADD COLUMN last_active bigint GENERATED ALWAYS AS (GREATEST("
        + ", ".join(f"(sources->>'{s}')::bigint" for s in sorted(_ENGAGING))
        + ")) STORED",
        f"CREATE INDEX entities_recent ON entities ({_RECENCY}) WHERE kind = 'session'",
        f"CREATE INDEX entities_host_recent ON entities (host_id, {_RECENCY}) "
        "WHERE kind = 'session'",
    ),
    4: (  # the owner's byte rates per entity: the same rates and runaway on any replica
        # (_replica.Replica publishes them as they move; _state.PublishedRate reads them)
        "ALTER TABLE emitted ADD COLUMN rate_in double precision NOT NULL DEFAULT 0, "  # B/s
        "ADD COLUMN rate_out double precision NOT NULL DEFAULT 0, "
        "ADD COLUMN rated_at bigint NOT NULL DEFAULT 0",  # ns; 0: never measured
    ),
}
"""From version: the statements that bring it to the next one."""
_MIGRATION_LOCK: Final = 0x6C61_7374_6163_7476  # "lastactv": one advisory lock key

_LATER: Final = (
    "CASE WHEN excluded.status IS NOT NULL AND excluded.status_time >= e.status_time "
    "THEN {} ELSE e.{} END"
)
_MERGE_SQL: Final = {
    # collector._record.merge, column by column: ``e`` is the stored row, ``excluded`` the
    # incoming one.
    "host_id": "coalesce(excluded.host_id, e.host_id)",
    "agent_id": "coalesce(excluded.agent_id, e.agent_id)",
    "service_name": "coalesce(excluded.service_name, e.service_name)",
    "first_seen": "least(e.first_seen, excluded.first_seen)",
    "last_seen": "greatest(e.last_seen, excluded.last_seen)",
    "sources": """(
        SELECT coalesce(jsonb_object_agg(k, t), '{}') FROM (
            SELECT k, max(t) AS t FROM (
                SELECT key AS k, value::bigint AS t FROM jsonb_each_text(e.sources)
                UNION ALL
                SELECT key, value::bigint FROM jsonb_each_text(excluded.sources)
            ) AS s GROUP BY k
        ) AS m
    )""",
    "input_bytes": "greatest(e.input_bytes, excluded.input_bytes)",
    "output_bytes": "greatest(e.output_bytes, excluded.output_bytes)",
    "pid": "coalesce(excluded.pid, e.pid)",
    "exit_code": "coalesce(excluded.exit_code, e.exit_code)",
    "holds": f"""CASE WHEN excluded.holds = '[]' THEN e.holds ELSE (
        WITH reported AS (
            SELECT h->>0 AS k, (h->>1)::bigint AS t, (h->>2)::bigint AS u
            FROM jsonb_array_elements(e.holds) AS h
            UNION ALL
            SELECT h->>0, (h->>1)::bigint, (h->>2)::bigint
            FROM jsonb_array_elements(excluded.holds) AS h
        ), latest AS (
            SELECT k, t, u, row_number() OVER (PARTITION BY k ORDER BY t DESC, u DESC) AS n
            FROM reported
        )
        SELECT coalesce(jsonb_agg(jsonb_build_array(k, t, u) ORDER BY k), '[]') FROM latest
        WHERE n = 1 AND NOT (u > 0 AND u < (SELECT max(t) FROM reported) - {HOLD_GRACE_NS})
    ) END""",
    "status": _LATER.format("excluded.status", "status"),
    "status_time": "greatest(e.status_time, excluded.status_time)",
    "task": _LATER.format("coalesce(excluded.task, e.task)", "task"),
    "result": _LATER.format("coalesce(excluded.result, e.result)", "result"),
    "attributes": "e.attributes || excluded.attributes",  # flat maps: RFC 7396 merge patch
    "turn": (
        "CASE WHEN excluded.turn IS NOT NULL AND excluded.turn_time >= e.turn_time "
        "THEN excluded.turn ELSE e.turn END"
    ),
    "turn_time": "greatest(e.turn_time, excluded.turn_time)",
}
_COLUMNS: Final = ", ".join(RECORD_FIELDS)
_INCOMING: Final = (
    "CREATE TEMPORARY TABLE incoming_entities (LIKE entities INCLUDING DEFAULTS) "
    "ON COMMIT DELETE ROWS"
)
_COPY: Final = f"COPY incoming_entities ({_COLUMNS}) FROM STDIN"
_PLACEHOLDERS: Final = ", ".join(
    "%s::jsonb" if name in JSON_FIELDS else "%s" for name in RECORD_FIELDS
)
_BYTES: Final = ("input_bytes", "output_bytes")
_BYTES_AT: Final = tuple(RECORD_FIELDS.index(name) for name in _BYTES)


def _upserts(additive: bool) -> tuple[str, str]:
    """The upsert of the copied batch and of one record; ``additive``: byte totals are the
    store's (replicas add what they counted: ``_ADD_COUNTED``), not merged."""
    merged = {**_MERGE_SQL, **({name: f"e.{name}" for name in _BYTES} if additive else {})}
    on_conflict = (
        "ON CONFLICT (kind, id) DO UPDATE SET "
        + ", ".join(f"{column} = {merged[column]}" for column in RECORD_FIELDS[2:])
        + ", txid = pg_current_xact_id()"
    )
    return (
        f"INSERT INTO entities AS e ({_COLUMNS}) "
        f"SELECT {_COLUMNS} FROM incoming_entities ORDER BY kind, id {on_conflict}",
        f"INSERT INTO entities AS e ({_COLUMNS}) VALUES ({_PLACEHOLDERS}) {on_conflict}",
    )


_UPSERTS: Final = {additive: _upserts(additive) for additive in (False, True)}
_ADD_COUNTED: Final = (
    "UPDATE entities AS e SET input_bytes = least(e.input_bytes + c.i, %s), "
    "output_bytes = least(e.output_bytes + c.o, %s), txid = pg_current_xact_id() "
    "FROM (SELECT * FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::numeric[]) "
    "AS u (kind, id, i, o) ORDER BY kind, id) AS c WHERE e.kind = c.kind AND e.id = c.id"
)
_UPSERT_STREAMS: Final = (
    "INSERT INTO streams AS s (key, start, time, value) "
    "SELECT * FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::numeric[]) "
    "ON CONFLICT (key) DO UPDATE SET start = excluded.start, time = excluded.time, "
    "value = excluded.value WHERE excluded.time >= s.time"
)
_LOCK_STREAMS: Final = (
    # Every stream of the commit, locked in key order (new ones inserted as placeholders, time
    # -1, so two replicas counting a new stream take turns too): replicas counting the same
    # streams neither deadlock nor count a point twice. Returns the stored last points.
    "INSERT INTO streams AS s (key, start, time, value) "
    "SELECT k, 0, -1, 0 FROM unnest(%s::text[]) AS k ORDER BY k "
    "ON CONFLICT (key) DO UPDATE SET time = s.time "
    "RETURNING key, start, time, value::text, prev_start, prev_time, prev_value::text"
)
_SAVE_BEFORE: Final = (
    "UPDATE streams AS s SET prev_start = u.start, prev_time = u.time, prev_value = u.value "
    "FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::numeric[]) "
    "AS u (key, start, time, value) WHERE s.key = u.key"
)
_SELECTED: Final = ", ".join(
    f"{name}::text" if name in JSON_FIELDS else name for name in RECORD_FIELDS
)
_FIRST_PAGE: Final = f"SELECT {_SELECTED} FROM entities ORDER BY kind, id LIMIT %s"
_NEXT_PAGE: Final = (
    f"SELECT {_SELECTED} FROM entities WHERE (kind, id) > (%s, %s) ORDER BY kind, id LIMIT %s"
)
_DELETE: Final = "DELETE FROM {} WHERE (kind, id) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"

_CONNECTION_WAIT_S: Final = 3.0
"""Seconds a save or load waits for a pooled connection before it fails."""

_VALUE_ERRORS: Final = (psycopg.DataError, ValueError, UnicodeError, OverflowError, TypeError)
"""What a record's values (not the database) can make a write raise: a NUL character in text
(PostgreSQL text cannot hold one), a number out of range, text that is not UTF-8."""


_KEY: Final = attrgetter("kind", "id")


def _rounds(records: Iterable[EntityRecord]) -> list[list[EntityRecord]]:
    """``records`` in rounds, each sorted by key, the n-th record of a key in the n-th round:
    an upsert may touch a row once, and merging a key's records in their own order is what
    the contract asks (:func:`~lastactive.collector._record.merge` is not associative for
    holds: pruning an ended hold forgets that it superseded an older report of it)."""
    rounds: list[dict[tuple[str, str], EntityRecord]] = []
    seen: dict[tuple[str, str], int] = {}
    for r in records:
        key = (r.kind, r.id)
        n = seen.get(key, 0)
        seen[key] = n + 1
        if n == len(rounds):
            rounds.append({})
        rounds[n][key] = r
    return [[batch[key] for key in sorted(batch)] for batch in rounds]


def _latest_streams(streams: Iterable[StreamRecord]) -> list[StreamRecord]:
    out: dict[str, StreamRecord] = {}
    for s in streams:
        prev = out.get(s.key)
        if prev is None or s.time >= prev.time:
            out[s.key] = s
    return [out[key] for key in sorted(out)]


class PostgresStore:
    """:class:`~lastactive.collector.store.Store` on a PostgreSQL database.

    Args:
        url: a libpq connection URL (``postgresql://user@host:port/db?...``); a password is
            better kept in ``PGPASSWORD`` or ``~/.pgpass`` than in the URL.
        max_connections: the pool's size: the writer, the start-up reader and room for more.
        connect_timeout: seconds to wait for the server at start.

    Raises:
        StoreError: the server cannot be reached or refuses, or the database's schema is newer
            than this lastactive.
    """

    def __init__(self, url: str, *, max_connections: int = 4, connect_timeout: float = 10) -> None:
        self.url = url
        try:
            with psycopg.connect(url, connect_timeout=max(1, int(connect_timeout))) as conn:
                _migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store: {exc}".strip()) from None
        self._pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_connections,
            # A commit fails (exports are refused retryably) within this when the server is
            # gone, instead of waiting the pool's default 30 s for it to come back.
            timeout=_CONNECTION_WAIT_S,
            kwargs={"connect_timeout": max(1, int(connect_timeout))},
            configure=_configure,
            check=ConnectionPool.check_connection,
            name="lastactive",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout)
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"PostgreSQL store: {exc}") from None
        self._closed = False
        self.additive_io = False
        """Replicas share this store (:mod:`lastactive.collector._replica`): a record's byte
        totals are not merged (a new row starts at 0); ``save``'s ``counted`` delta bytes are
        added to the stored totals, and its cumulative streams' points counted against the
        streams' stored last points (:func:`~lastactive.collector._record.count_rises`), so
        bytes counted by several replicas add up to what one process would count."""

    def connection(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A pooled connection, returned to the pool on exit (waits at most 3 s for one).

        Raises:
            psycopg_pool.PoolTimeout: none was free (the server is down), a ``psycopg.Error``.
        """
        return self._pool.connection()

    def load(self) -> list[EntityRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(f"SELECT {_SELECTED} FROM entities").fetchall()
        return self.records(rows)

    def load_page(
        self, after: tuple[str, str] | None, size: int
    ) -> tuple[list[EntityRecord], tuple[str, str] | None]:
        query, args = (_FIRST_PAGE, (size,)) if after is None else (_NEXT_PAGE, (*after, size))
        with self._pool.connection() as conn:
            rows = conn.execute(query, args).fetchall()
        following = (rows[-1][0], rows[-1][1]) if len(rows) == size else None
        return self.records(rows), following

    def records(self, rows: Iterable[tuple[Any, ...]]) -> list[EntityRecord]:
        """Rows read in :data:`RECORD_FIELDS` order as records; one that is not a valid record
        is logged and skipped."""
        out = []
        for row in rows:
            try:
                out.append(record_of(row))
            except ROW_ERRORS as exc:
                _log.error("PostgreSQL: skipping the unreadable row %r, %r: %s", *row[:2], exc)
        return out

    def load_streams(self) -> list[StreamRecord]:
        with self._pool.connection() as conn:
            rows = conn.execute(
                "SELECT key, start, time, value::text FROM streams WHERE time >= 0"
            ).fetchall()
        return [stream_of(*row) for row in rows]

    def save(
        self,
        records: Sequence[EntityRecord],
        streams: Sequence[StreamRecord] = (),
        counted: Counted | None = None,
    ) -> int:
        if counted and not self.additive_io:
            raise ValueError("counted bytes are for a store replicas share (additive_io)")
        if not records and not streams and not counted:
            return 0
        rounds = _rounds(records)
        latest = _latest_streams(streams)
        copied, one = _UPSERTS[self.additive_io]
        with self.connection() as conn:
            try:
                with conn.transaction():
                    adds = self._count(conn, latest, counted)
                    self._save_streams(conn, latest)
                    for n, batch in enumerate(rounds):  # one, unless a key comes twice
                        if n:
                            conn.execute("TRUNCATE incoming_entities")
                        with conn.cursor().copy(_COPY) as copy:
                            for r in batch:
                                copy.write_row(self._row(r))
                        conn.execute(copied)
                    self._add_counted(conn, adds)
                return 0
            except _VALUE_ERRORS:  # find the bad ones: the rest must not wait for them
                pass
            skipped = 0
            with conn.transaction():
                adds = self._count(conn, latest, counted)
                self._save_streams(conn, latest)
                for r in sorted(records, key=_KEY):  # stable: a key's records in their order
                    try:
                        with conn.transaction():  # a savepoint: an error undoes this row only
                            conn.execute(one, self._row(r))
                    except _VALUE_ERRORS as exc:
                        skipped += 1
                        _log.error("PostgreSQL: not saving %s %r: %s", r.kind, r.id, exc)
                self._add_counted(conn, adds)
            return skipped

    def _row(self, r: EntityRecord) -> tuple[Any, ...]:
        row = row_of(r)
        if not self.additive_io:
            return row
        values = list(row)  # a new row starts at 0 bytes: what was counted is added to it
        for i in _BYTES_AT:
            values[i] = 0
        return tuple(values)

    def _count(
        self, conn: psycopg.Connection[Any], latest: list[StreamRecord], counted: Counted | None
    ) -> list[tuple[str, str, int, int]]:
        """With :attr:`additive_io`: lock the commit's streams and count the cumulative ones'
        points against their stored last points; the bytes to add, per entity."""
        if not self.additive_io:
            return []
        rises: Sequence[StreamRise] = counted.streams if counted else ()
        keys = sorted({s.key for s in latest} | {r.key for r in rises})
        stored: Heads = {}
        if keys:
            for key, start, time, value, *before in conn.execute(_LOCK_STREAMS, (keys,)):
                stored[key] = (
                    stream_of(key, start, time, value) if time >= 0 else None,
                    stream_of(key, *before) if before[0] is not None else None,
                )
        added = count_rises(rises, stored)
        befores = [b for r in rises if (b := stored[r.key][1]) is not None]
        if befores:
            columns = ([b.key for b in befores], [b.start for b in befores])
            conn.execute(
                _SAVE_BEFORE,
                (*columns, [b.time for b in befores], [repr(b.value) for b in befores]),
            )
        totals: dict[tuple[str, str], list[int]] = {}
        for kind, key, i, o in (*(counted.bytes if counted else ()), *added):
            mine = totals.setdefault((kind, key), [0, 0])
            mine[0] += i
            mine[1] += o
        return [(kind, key, i, o) for (kind, key), (i, o) in sorted(totals.items())]

    @staticmethod
    def _add_counted(
        conn: psycopg.Connection[Any], counted: Sequence[tuple[str, str, int, int]]
    ) -> None:
        if counted:
            columns = list(zip(*counted, strict=True))
            conn.execute(_ADD_COUNTED, (INT64_MAX, INT64_MAX, *map(list, columns)))

    @staticmethod
    def _save_streams(conn: psycopg.Connection[Any], streams: list[StreamRecord]) -> None:
        if streams:
            conn.execute(
                _UPSERT_STREAMS,
                (
                    [s.key for s in streams],
                    [s.start for s in streams],
                    [s.time for s in streams],
                    [repr(s.value) for s in streams],
                ),
            )

    def delete(self, keys: Sequence[tuple[str, str]], streams_before: int = 0) -> None:
        if not keys and not streams_before:
            return
        ordered = sorted(keys)
        with self._pool.connection() as conn, conn.transaction():
            if ordered:
                columns = ([k for k, _ in ordered], [i for _, i in ordered])
                for table in ("entities", "emitted"):  # a record, its last emitted condition
                    conn.execute(_DELETE.format(table), columns)
            if streams_before:
                conn.execute("DELETE FROM streams WHERE time <= %s", (streams_before,))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._pool.close()


def _configure(conn: psycopg.Connection[Any]) -> None:
    """Each pooled connection's temporary table for the copied batch."""
    conn.execute(_INCOMING)
    conn.commit()


def _migrate(conn: psycopg.Connection[Any]) -> None:
    """Create or migrate the schema to :data:`_SCHEMA_VERSION`, once among replicas.

    Raises:
        StoreError: the database's schema is newer than this lastactive's.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        conn.execute(_META)
        row = conn.execute("SELECT version FROM lastactive_schema").fetchone()
        version = 0 if row is None else int(row[0])
        if version > _SCHEMA_VERSION:
            raise StoreError(
                f"PostgreSQL store: schema version {version} is newer than this lastactive "
                f"({_SCHEMA_VERSION})"
            )
        if version == 0:  # version 1, then the migrations as for an existing one
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute("INSERT INTO lastactive_schema (version) VALUES (1)")
            version = 1
        for v in range(version, _SCHEMA_VERSION):
            for statement in _MIGRATIONS[v]:
                conn.execute(statement)
        conn.execute("UPDATE lastactive_schema SET version = %s", (_SCHEMA_VERSION,))
