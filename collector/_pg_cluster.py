"""Replicas on one PostgreSQL store: shard leases, the change feed, fenced emission and the
outbox (issue 13). The SQL half; :mod:`lastactive.collector._replica` drives it from the event
loop, each call in a worker thread on a pooled connection of the store's.

* **Leases** (``shards``): each of :data:`~lastactive.collector._shards.SHARDS` rows names an
  owner, an ``epoch`` (+1 at each claim) and when the lease ``expires``, on the database's clock
  (a replica's own clock is never asked). A replica renews its leases, claims expired or free
  ones up to its :func:`~lastactive.collector._shards.fair_share` of the live replicas
  (``replicas``: heartbeats) and releases the excess, so a joining replica gets shards and a
  dead one's are taken over once its leases expire (SCALEOUT: Temporal's fenced shard owner,
  River's and Oban's lease rows).
* **Fenced emission**: the transitions of a tick, the condition each entity was left in
  (``emitted``) and their outbox rows are written in one transaction that first locks the
  shard rows it emits for (``FOR SHARE``), checking owner, epoch and ``expires >
  clock_timestamp()``. A replica that stalled past its lease finds its shards gone and writes
  nothing for them; a claimer waits for a running emission to commit, so a new owner reads
  every condition its predecessor emitted and emits each transition once.
* **The outbox**: rows numbered from the one-row ``outbox_seq`` counter, whose row lock is held
  until commit, so numbers are given in commit order and a reader may read ``seq > last``
  without missing a row committed late (SCALEOUT measured that a plain sequence does miss
  them). One ``NOTIFY`` per emitting transaction wakes the readers (never one per transition:
  notifying commits serialize).
* **The change feed**: every entity row carries the transaction that last wrote it (``txid``);
  a shard's owner reads the rows of its shards written at or after the visibility horizon
  (``pg_snapshot_xmin``) of its previous read, which a transaction still running then cannot
  be below: nothing committed late is missed, and what is read twice merges idempotently.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

import psycopg

from lastactive.collector._postgres import PostgresStore
from lastactive.collector._record import EntityRecord
from lastactive.collector._shards import fair_share, shard_of
from lastactive.collector._state import PageKey
from lastactive.collector._transitions import Transition, TransitionField

__all__ = ["CHANNEL", "Emitted", "PostgresCluster", "Stored"]

_log = logging.getLogger(__name__)

CHANNEL: Final = "lastactive_outbox"
"""The ``LISTEN``/``NOTIFY`` channel an emitting transaction notifies once."""


class Stored(NamedTuple):
    """A stored entity with what its owner last emitted for it."""

    record: EntityRecord
    condition: str | None
    """The condition last emitted (``condition_text``; ``None``: none)."""
    rate_in: float
    """Input bytes/s its owner last measured (its rate window's; 0 for none)."""
    rate_out: float
    """Output bytes/s, likewise."""
    rated_at: int
    """When the owner measured them (ns; 0: never)."""


Emitted = tuple[str, str, str, int | None, bool, float, float, int]
"""``(kind, id, condition_text, deadline, held, rate_in, rate_out, rated_at)``: what a tick
leaves an entity in: its condition, its deadline (ns; ``None``: none), whether a hold holds it
up (the index every replica's decisions walk) and its byte rates (bytes/s) at ``rated_at``
(ns)."""

_COLUMNS: Final = (
    "e.kind, e.id, e.host_id, e.agent_id, e.service_name, e.first_seen, e.last_seen, "
    "e.sources::text, e.input_bytes, e.output_bytes, e.pid, e.exit_code, e.holds::text, "
    "e.status, e.status_time, e.task, e.result, e.attributes::text, e.turn, e.turn_time, "
    "c.condition, COALESCE(c.rate_in, 0), COALESCE(c.rate_out, 0), COALESCE(c.rated_at, 0)"
)
_FROM: Final = "FROM entities e LEFT JOIN emitted c ON c.kind = e.kind AND c.id = e.id"
_SHARD_PAGE: Final = (
    f"SELECT {_COLUMNS} {_FROM} WHERE e.shard = ANY(%s) AND (e.kind, e.id) > (%s, %s) "
    "ORDER BY e.kind, e.id LIMIT %s"
)
_CHANGES: Final = f"SELECT {_COLUMNS} {_FROM} WHERE e.shard = ANY(%s) AND e.txid >= %s::text::xid8"
_ONE: Final = f"SELECT {_COLUMNS} {_FROM} WHERE e.kind = %s AND e.id = %s"
_HORIZON: Final = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_SECONDS: Final = "%s * interval '1 second'"
_HEARTBEAT: Final = (
    "INSERT INTO replicas (name, seen) VALUES (%s, clock_timestamp()) "
    "ON CONFLICT (name) DO UPDATE SET seen = excluded.seen"
)
_LIVE: Final = f"SELECT count(*) FROM replicas WHERE seen > clock_timestamp() - {_SECONDS}"
_FORGET_REPLICAS: Final = f"DELETE FROM replicas WHERE seen < clock_timestamp() - {_SECONDS}"
_HELD: Final = "(shard, epoch) IN (SELECT * FROM unnest(%s::smallint[], %s::bigint[]))"
_RENEW: Final = (
    f"UPDATE shards SET expires = clock_timestamp() + {_SECONDS} "
    f"WHERE owner = %s AND expires > clock_timestamp() AND {_HELD} RETURNING shard, epoch"
)
_CLAIM: Final = (
    f"UPDATE shards SET owner = %s, epoch = epoch + 1, expires = clock_timestamp() + {_SECONDS} "
    "WHERE shard IN (SELECT shard FROM shards WHERE owner IS NULL OR expires <= "
    "clock_timestamp() ORDER BY shard LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING shard, epoch"
)
_RELEASE: Final = (
    "UPDATE shards SET owner = NULL, expires = '-infinity' WHERE owner = %s AND shard = ANY(%s)"
)
_FENCE: Final = (
    f"SELECT shard FROM shards WHERE owner = %s AND expires > clock_timestamp() AND {_HELD} "
    "ORDER BY shard FOR SHARE"
)
_EMITTED: Final = (
    "INSERT INTO emitted (kind, id, condition, deadline, held, rate_in, rate_out, rated_at) "
    "SELECT * FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::boolean[], "
    "%s::float8[], %s::float8[], %s::bigint[]) AS u (kind, id, condition, deadline, held, "
    "rate_in, rate_out, rated_at) ORDER BY kind, id ON CONFLICT (kind, id) DO UPDATE SET "
    "condition = excluded.condition, deadline = excluded.deadline, held = excluded.held, "
    "rate_in = excluded.rate_in, rate_out = excluded.rate_out, rated_at = excluded.rated_at"
)
_INDEXED: Final = "FROM emitted c JOIN entities e ON e.kind = c.kind AND e.id = c.id"
_BY_DEADLINE: Final = (
    f"SELECT {_COLUMNS}, c.deadline {_INDEXED} WHERE c.deadline >= %s AND c.deadline <= %s "
    "AND (c.deadline, c.kind, c.id) > (%s, %s, %s) ORDER BY c.deadline, c.kind, c.id LIMIT %s"
)
_HELD_UP: Final = f"SELECT {_COLUMNS} {_INDEXED} WHERE c.held"
# _state.page_key, as the store's entities_recent and entities_host_recent index it.
_PAGE_KEY: Final = "(-COALESCE(e.last_active, 0)), (-e.last_seen), (-e.first_seen), e.id"
_RECENT: Final = (
    f"SELECT {_COLUMNS}, {_PAGE_KEY} {_FROM} WHERE e.kind = 'session' {{}}"
    f"AND ({_PAGE_KEY}) > (%s, %s, %s, %s) ORDER BY {_PAGE_KEY} LIMIT %s"
)
_RECENT_ALL: Final = _RECENT.format("")
_RECENT_ON_HOST: Final = _RECENT.format("AND e.host_id = %s ")
_FIRST_KEY: Final = (-(2**63), -(2**63), -(2**63), "")  # before every session's
_WATCHED: Final = (
    f"SELECT {_COLUMNS} {_FROM} WHERE {{}} AND (e.kind, e.id) > (%s, %s) "
    "ORDER BY e.kind, e.id LIMIT %s"
)
_WATCHED_ALL: Final = _WATCHED.format("e.kind IN ('host', 'session')")
_WATCHED_HOST: Final = _WATCHED.format(
    "((e.kind = 'host' AND e.id = %s) OR (e.kind = 'session' AND e.host_id = %s))"
)
_WATCHED_SESSION: Final = _WATCHED.format("e.kind = 'session' AND e.id = %s")
_NUMBER: Final = "UPDATE outbox_seq SET last = last + %s RETURNING last"
_OUTBOX_COLUMNS: Final = "at, kind, id, host_id, field, previous, current, reason, hibernate_at"
_OUTBOX: Final = (
    f"INSERT INTO outbox (seq, {_OUTBOX_COLUMNS}) SELECT * FROM unnest(%s::bigint[], "
    "%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], %s::text[], "
    "%s::text[], %s::bigint[])"
)
_READ_OUTBOX: Final = (
    f"SELECT seq, {_OUTBOX_COLUMNS} FROM outbox WHERE seq > %s ORDER BY seq LIMIT %s"
)


def _held(held: Mapping[int, int]) -> tuple[list[int], list[int]]:
    return list(held), list(held.values())


class PostgresCluster:
    """The cluster tables of ``store``'s database, for the replica named ``name``.

    Args:
        lease: seconds a lease lasts without renewal (renewed every third of it); a replica
            silent that long is not live.
    """

    def __init__(self, store: PostgresStore, name: str, lease: float) -> None:
        self._store = store
        self.name = name
        self.lease = lease
        with store.connection() as conn:
            row = conn.execute("SELECT cluster FROM lastactive_schema").fetchone()
        self.id: str = row[0] if row is not None else "pg"
        """The outbox's name in event ids (random, made with the schema)."""

    def lease_shards(self, held: Mapping[int, int]) -> tuple[dict[int, int], int]:
        """Heartbeat; renew the leases of ``held`` (shard -> epoch) still valid; claim free or
        expired shards, or release the highest held ones, to hold this replica's fair share.

        Returns:
            The shards held now (shard -> epoch) and how many replicas are live.
        Raises:
            psycopg.Error: the database failed (nothing changed).
        """
        with self._store.connection() as conn, conn.transaction():
            conn.execute(_HEARTBEAT, (self.name,))
            live = int(conn.execute(_LIVE, (self.lease,)).fetchone()[0])  # type: ignore[index]
            now_held = dict(conn.execute(_RENEW, (self.lease, self.name, *_held(held))).fetchall())
            fair = fair_share(live)
            if len(now_held) > fair:
                excess = sorted(now_held)[fair:]
                conn.execute(_RELEASE, (self.name, excess))
                for shard in excess:
                    del now_held[shard]
            elif len(now_held) < fair:
                claimed = conn.execute(_CLAIM, (self.name, self.lease, fair - len(now_held)))
                now_held.update(claimed.fetchall())
            conn.execute(_FORGET_REPLICAS, (self.lease * 100,))
        return now_held, live

    def leave(self) -> None:
        """Release every shard and the heartbeat (at shutdown: the others take over at once
        instead of after the lease)."""
        with self._store.connection() as conn, conn.transaction():
            conn.execute(
                "UPDATE shards SET owner = NULL, expires = '-infinity' WHERE owner = %s",
                (self.name,),
            )
            conn.execute("DELETE FROM replicas WHERE name = %s", (self.name,))

    def load_shards(
        self, shards: Sequence[int], after: tuple[str, str] | None, size: int
    ) -> tuple[list[Stored], tuple[str, str] | None]:
        """Up to ``size`` stored entities of ``shards`` after key ``after`` (``None``: from
        the first), and the key to ask the next page after (``None``: that was the last)."""
        with self._store.connection() as conn:
            rows = conn.execute(_SHARD_PAGE, (list(shards), *(after or ("", "")), size))
            page = rows.fetchall()
        following = (page[-1][0], page[-1][1]) if len(page) == size else None
        return self._stored(page), following

    def entity(self, kind: str, id_: str) -> Stored | None:
        """One stored entity, ``None`` if there is none."""
        with self._store.connection() as conn:
            rows = conn.execute(_ONE, (kind, id_)).fetchall()
        stored = self._stored(rows)
        return stored[0] if stored else None

    def changes(self, shards: Sequence[int], horizon: int) -> tuple[list[Stored], int]:
        """The entities of ``shards`` written by a transaction numbered ``horizon`` or later,
        and the horizon to read from next time (no transaction still running is below it)."""
        with self._store.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            following = int(conn.execute(_HORIZON).fetchone()[0])  # type: ignore[index]
            rows = conn.execute(_CHANGES, (list(shards), str(horizon))).fetchall()
        return self._stored(rows), following

    def by_deadline(
        self, lowest: int, highest: int, after: tuple[int, str, str] | None, size: int
    ) -> list[tuple[int, Stored]]:
        """Up to ``size`` stored entities whose indexed deadline (ns, as their owner last
        evaluated it: never later than their own) is within ``[lowest, highest]``, in order of
        ``(deadline, kind, id)`` after ``after`` (``None``: from the first), each with it."""
        start = after or (lowest, "", "")
        with self._store.connection() as conn:
            rows = conn.execute(_BY_DEADLINE, (lowest, highest, *start, size)).fetchall()
        return [(row[-1], r) for row in rows for r in self._stored((row[:-1],))]

    def recent(
        self, host_id: str | None, after: PageKey | None, size: int
    ) -> list[tuple[PageKey, Stored]]:
        """Up to ``size`` stored sessions (on ``host_id``; ``None``: any) after ``after``
        (``None``: from the first) in the "most recent first" order of
        :func:`~lastactive.collector._state.page_key`, each with its key (an index walk)."""
        key = after or _FIRST_KEY
        with self._store.connection() as conn:
            if host_id is None:
                rows = conn.execute(_RECENT_ALL, (*key, size)).fetchall()
            else:
                rows = conn.execute(_RECENT_ON_HOST, (host_id, *key, size)).fetchall()
        return [(tuple(row[-4:]), r) for row in rows for r in self._stored((row[:-4],))]

    def watched(
        self,
        host_id: str | None,
        session_id: str | None,
        after: tuple[str, str] | None,
        size: int,
    ) -> list[Stored]:
        """Up to ``size`` stored entities a watch's snapshot shows, in ``(kind, id)`` order
        after ``after`` (``None``: from the first): the session ``session_id`` (on
        ``host_id`` if given), else the host ``host_id`` and its sessions, else every session
        and host (a walk of the primary key)."""
        start = after or ("", "")
        with self._store.connection() as conn:
            if session_id is not None:
                rows = conn.execute(_WATCHED_SESSION, (session_id, *start, size)).fetchall()
            elif host_id is not None:
                rows = conn.execute(_WATCHED_HOST, (host_id, host_id, *start, size)).fetchall()
            else:
                rows = conn.execute(_WATCHED_ALL, (*start, size)).fetchall()
        stored = self._stored(rows)
        if session_id is not None and host_id is not None:
            return [s for s in stored if s.record.host_id == host_id]
        return stored

    def held_up(self) -> list[Stored]:
        """The stored entities their owner last found held up (by a hold that counts)."""
        with self._store.connection() as conn:
            rows = conn.execute(_HELD_UP).fetchall()
        return self._stored(rows)

    def _stored(self, rows: Iterable[tuple[Any, ...]]) -> list[Stored]:
        out: list[Stored] = []
        for row in rows:
            records = self._store.records((row[:-4],))
            if records:
                out.append(Stored(records[0], *row[-4:]))
        return out

    def emit(
        self,
        held: Mapping[int, int],
        transitions: Sequence[Transition],
        emitted: Sequence[Emitted],
    ) -> set[int]:
        """Write ``transitions`` to the outbox and the conditions ``emitted``, for the shards
        of ``held`` (shard -> epoch) whose lease is still this replica's; one ``NOTIFY``.

        Returns:
            The shards of ``held`` no longer this replica's (what was for them is dropped).
        Raises:
            psycopg.Error: the database failed (nothing written).
        """
        with self._store.connection() as conn, conn.transaction():
            valid = {row[0] for row in conn.execute(_FENCE, (self.name, *_held(held)))}
            kept = [t for t in transitions if shard_of(t.kind, t.id) in valid]
            rows = sorted(e for e in emitted if shard_of(e[0], e[1]) in valid)
            if rows:
                conn.execute(_EMITTED, tuple(map(list, zip(*rows, strict=True))))
            if kept:
                last = int(conn.execute(_NUMBER, (len(kept),)).fetchone()[0])  # type: ignore[index]
                seqs = list(range(last - len(kept) + 1, last + 1))
                columns: list[list[Any]] = [seqs] + [[] for _ in range(9)]
                for t in kept:
                    for column, value in zip(columns[1:], _outbox_row(t), strict=True):
                        column.append(value)
                conn.execute(_OUTBOX, columns)
                conn.execute(f"NOTIFY {CHANNEL}")
        return set(held) - valid

    def outbox_after(self, seq: int, limit: int) -> list[tuple[int, Transition]]:
        """Up to ``limit`` transitions numbered after ``seq``, in order."""
        with self._store.connection() as conn:
            rows = conn.execute(_READ_OUTBOX, (seq, limit)).fetchall()
        return [(row[0], _transition(row[1:])) for row in rows]

    def outbox_head(self) -> int:
        """The number of the last transition written."""
        with self._store.connection() as conn:
            return int(conn.execute("SELECT last FROM outbox_seq").fetchone()[0])  # type: ignore[index]

    def trim_outbox(self, keep: int) -> None:
        """Delete all but the last ``keep`` transitions."""
        with self._store.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM outbox WHERE seq <= (SELECT last FROM outbox_seq) - %s",
                         (keep,))  # fmt: skip

    def listen(self, woken: Callable[[], None], stop: threading.Event) -> None:
        """Call ``woken`` at each notification of :data:`CHANNEL` until ``stop`` is set (in a
        thread of its own, on a connection of its own; reconnects after a failure, and calls
        ``woken`` then too, in case a notification was missed)."""
        while not stop.is_set():
            try:
                with psycopg.connect(self._store.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    woken()
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=0.5, stop_after=1):
                            woken()
            except psycopg.Error as exc:
                _log.warning("listening for transitions failed (%s); reconnecting", exc)
                stop.wait(1.0)


def _outbox_row(t: Transition) -> tuple[Any, ...]:
    return (t.at, t.kind, t.id, t.host_id, str(t.field), t.previous, t.current, t.reason,
            t.hibernate_at)  # fmt: skip


def _transition(row: Sequence[Any]) -> Transition:
    at, kind, id_, host_id, field, previous, current, reason, hibernate_at = row
    return Transition(at, kind, id_, host_id, TransitionField(field), previous, current, reason,
                      hibernate_at)  # fmt: skip
