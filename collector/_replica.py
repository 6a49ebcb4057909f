"""One of several ``lastactive serve`` replicas on a PostgreSQL store (issue 13): which
entities' transitions it evaluates, and how every replica's watchers get every transition.

Any replica takes any telemetry and commits it (the store merges rows from several writers as
one process would). Transitions are evaluated by one replica per entity, the holder of the
entity's shard lease (:mod:`lastactive.collector._shards`). Every turn (:data:`REPLICA_TICK_S`)
a replica, in one task, in order:

1. every third of the lease: renews its leases and claims or releases shards to hold its fair
   share (:meth:`~lastactive.collector._pg_cluster.PostgresCluster.lease_shards`). A shard it
   gains is loaded (its rows, each with the condition last emitted for it: :meth:`~lastactive.
   collector._transitions.TransitionEngine.adopt`); one it lost is forgotten by the engine;
2. reads the rows of its shards that any replica wrote since its last read (the change feed)
   into memory, so it evaluates what arrived elsewhere;
3. ticks the engine over its entities and emits the transitions, fenced by the leases, to the
   outbox (what a lost lease's shards had is dropped: their new owner emits it).

Separately, every replica reads the outbox in order, woken by ``NOTIFY``, and publishes it to
its :class:`~lastactive.collector._watch.WatchHub` under the outbox's numbers, so a watcher gets
the same transitions with the same event ids on every replica and resumes on any of them.

**Bound** (stated in the README): a dead replica's shards are claimed within ``lease`` plus one
renewal period (``lease / 3``) of its last renewal; their due transitions then fire within
the load of the shard plus a tick. A stalled replica emits nothing after its lease expired,
and a claimer waits for an emission already under way to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Final, ParamSpec, TypeVar

from lastactive.collector._flusher import StoreUnavailableError
from lastactive.collector._record import merge
from lastactive.collector._shards import shard_of
from lastactive.collector._sliced import turning
from lastactive.collector._state import (
    NANOS,
    VIEWS_SLICE,
    ActivityState,
    Entity,
    EntityView,
    Kind,
    PageKey,
    PublishedRate,
    page_key,
    view,
)
from lastactive.collector._transitions import (
    DECISIONS_SLICE,
    SNAPSHOT_PAGE,
    TICK_BUDGET,
    Snapshot,
    Transition,
    TransitionEngine,
    condition_from_text,
    condition_text,
    snapshot_of,
)
from lastactive.collector._watch import RESUME_LOG, WatchHub
from lastactive.collector.policy import Decisions, DecisionsBuilder, Policy

if TYPE_CHECKING:  # psycopg is an optional extra: imported only with a PostgreSQL store
    from lastactive.collector._pg_cluster import Emitted, PostgresCluster, Stored

__all__ = ["OUTBOX_KEEP", "REPLICA_TICK_S", "Replica", "default_name"]

_log = logging.getLogger(__name__)
_P = ParamSpec("_P")
_T = TypeVar("_T")

REPLICA_TICK_S: Final = 0.25
"""Seconds between a replica's turns. Each reads the store's change feed and writes the outbox
(PostgreSQL round trips), so a replica turns at a quarter of a second rather than at a single
collector's :data:`~lastactive.collector._transitions.TICK_S`; its transitions fire at most
this late, its decisions read the shared index and do not wait for a turn."""
LOAD_PAGE: Final = 5000
"""Rows of a gained shard read per call."""
ADOPT_SLICE: Final = 500
"""Rows merged and adopted per turn of the event loop."""
OUTBOX_PAGE: Final = 10_000
"""Transitions read from the outbox per call."""
OUTBOX_KEEP: Final = 4 * RESUME_LOG
"""Transitions the outbox keeps (older ones are deleted every :data:`TRIM_EVERY_S`)."""
TRIM_EVERY_S: Final = 60.0
DECISIONS_PAGE: Final = 1000
"""Rows of the shared deadline index read per call, at most."""
INT64_MIN: Final = -(2**63)
KEEP_FOREIGN_S: Final = 60.0
"""Seconds an entity this replica does not own stays in memory after its last report or
read here (then it is evicted, once committed: the store has it)."""
RATE_SLACK: Final = 0.1
"""An owner publishes an entity's byte rates again once either moved by more than this
fraction of the larger of the published and the current rate (or to or from 0)."""
UNSENT_MAX: Final = 100_000
"""Transitions kept for the next emission while the store fails; beyond, the oldest are
dropped (logged): the shard's next owner re-derives them from the stored conditions."""


def default_name() -> str:
    """``<host name>-<pid>-<4 random hex digits>``: unique among replicas, new at each start
    (a restarted replica's old leases simply expire)."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


class Replica:
    """This process's part in a set of replicas on ``cluster``'s store.

    Args:
        state: the process's activity state (telemetry from any shard; the owned shards'
            rows are merged in).
        clock: ns since the epoch.
    """

    def __init__(
        self, cluster: PostgresCluster, state: ActivityState, clock: Callable[[], int]
    ) -> None:
        self.cluster = cluster
        self._state = state
        state.tallies = self.owns  # /metrics counts this replica's sessions: replicas sum
        self._clock = clock
        self.held: dict[int, int] = {}
        """Shard -> epoch of the leases held."""
        self.live = 0
        """Live replicas at the last renewal (this one included)."""
        self.loaded = asyncio.Event()
        """Set once the first leases are taken and their shards loaded."""
        self.gained = 0
        """Shards taken over since start (metrics)."""
        self.fenced = 0
        """Shards found lost when emitting (their transitions dropped; metrics)."""
        self._horizon = 0
        self._unsent: list[Transition] = []
        self._moved: dict[Entity, None] = {}  # deadline, held flag or rates to write
        self._rated: dict[Entity, tuple[float, float]] = {}
        """Owned entities -> the (input, output) bytes/s last published for them, if not 0."""
        self._foreign: OrderedDict[Entity, int] = OrderedDict()
        """Entities in memory this replica does not own -> when last reported or read here
        (ns), oldest first: evicted :data:`KEEP_FOREIGN_S` later."""
        self._renew_at = 0.0
        self._trim_at = 0.0

    def owns(self, e: Entity) -> bool:
        """Does this replica evaluate ``e``'s transitions (hold its shard's lease)?"""
        return shard_of(e.kind, e.id) in self.held

    async def fetch(self, kind: Kind, key: str) -> None:
        """Merge the committed record of one entity into memory, so a read on this replica
        answers what every replica committed (within a commit interval of each). While the
        store fails, memory answers alone."""
        try:
            stored = await asyncio.to_thread(self.cluster.entity, str(kind), key)
        except Exception as exc:  # the store is down: answer from memory (/readyz says why)
            _log.debug("reading %s %r from the store failed: %s", kind, key, exc)
            return
        if stored is not None:
            now = self._clock()
            loaded = self._state.load((stored.record,), now)
            for e in loaded:
                if not self.owns(e):
                    _owners_rates(e, stored)
            self._keep_foreign(loaded, now)

    async def decisions(
        self, policy: Policy, now: int, within_ns: int, limit: int | None
    ) -> Decisions:
        """:func:`~lastactive.collector.policy.decide` over the entities of every replica, the
        same answer on each (within a commit interval and a tick of their owners): the
        entities their owners last found held up, then the owners' deadline index walked as
        :meth:`~lastactive.collector._transitions.TransitionEngine.decisions` walks its own
        (an indexed deadline is never later than the entity's own; activity only moves it
        later), each candidate evaluated afresh from its stored row merged with what this
        replica has not committed yet. Costs the held entities and about ``2 * limit`` rows,
        evaluated ``DECISIONS_SLICE`` a slice (the loop turns between, as between pages).

        Raises:
            StoreUnavailableError: the store failed (503 / UNAVAILABLE).
        """
        builder = DecisionsBuilder(policy, now, within_ns)
        done: set[tuple[str, str]] = set()

        def add(s: Stored) -> None:
            if (s.record.kind, s.record.id) not in done:
                done.add((s.record.kind, s.record.id))
                builder.add(view(self._current(s), now))

        size = DECISIONS_PAGE if limit is None else min(limit + 1, DECISIONS_PAGE)
        async for r in turning(await _read(self.cluster.held_up), DECISIONS_SLICE):
            add(r)
        for soon, lowest, highest in ((False, INT64_MIN, now), (True, now + 1, now + within_ns)):
            after: tuple[int, str, str] | None = None
            walking = True
            while walking:
                page = await _read(self.cluster.by_deadline, lowest, highest, after, size)
                walking = len(page) == size
                async for indexed_at, r in turning(page, DECISIONS_SLICE):
                    # By the deadline alone (a tie is walked whole): the store orders kind and
                    # id by the database's collation, which need not be Python's.
                    if not builder.wants((indexed_at, "", ""), soon, limit):
                        walking = False
                        break
                    add(r)
                if walking:
                    after = (page[-1][0], page[-1][1].record.kind, page[-1][1].record.id)
        return builder.result(limit)

    async def sessions(
        self,
        now: int,
        host_id: str | None,
        limit: int,
        trusted_only: bool,
        after: PageKey | None,
    ) -> list[EntityView]:
        """:meth:`~lastactive.collector._state.ActivityState.sessions` over every replica's
        committed sessions, the same on each (within a commit interval): the first ``limit``
        (> 0) after ``after`` in :func:`~lastactive.collector._state.page_key` order, found by
        a walk of the store's recency index from ``after``, its rows made into views
        ``VIEWS_SLICE`` a slice (the loop turns between, as between pages).

        With ``trusted_only`` the key is the trusted engagement, never later than the indexed
        one, so a session is placed once the walk has passed its key; the walk starts at the
        first session and, when fewer than ``limit`` sessions have trusted engagement, walks
        every engaged one (as in memory).

        Raises:
            StoreUnavailableError: the store failed (503 / UNAVAILABLE).
        """
        placed: list[tuple[PageKey, int, EntityView]] = []  # a heap by key
        out: list[EntityView] = []
        cursor = None if trusted_only else after
        size = max(limit, DECISIONS_PAGE) if trusted_only else limit
        order = itertools.count()
        while True:
            page = await _read(self.cluster.recent, host_id, cursor, size)
            async for indexed, r in turning(page, VIEWS_SLICE):
                while placed and placed[0][0] < indexed:  # nothing unwalked precedes it
                    out.append(heapq.heappop(placed)[2])
                    if len(out) == limit:
                        return out
                v = view(self._current(r, uncommitted=False), now, trusted_only)
                key = page_key(v)
                if after is None or key > after:
                    heapq.heappush(placed, (key, next(order), v))
            if len(page) < size:
                break
            cursor = page[-1][0]
        while placed and len(out) < limit:
            out.append(heapq.heappop(placed)[2])
        return out

    async def snapshot_pages(
        self,
        policy: Policy,
        host_id: str | None,
        session_id: str | None,
        size: int = SNAPSHOT_PAGE,
    ) -> AsyncIterator[list[Snapshot]]:
        """A watch snapshot of every replica's entities (the filter as :meth:`~lastactive.
        collector._transitions.TransitionEngine.snapshot_pages` reads it), in pages of
        :data:`~lastactive.collector._transitions.SNAPSHOT_PAGE` read from the store in key
        order as they are asked for (``size`` entities each), each entity evaluated afresh
        from its stored row merged with what this replica has not committed; at least one
        page, maybe empty.

        Raises:
            StoreUnavailableError: the store failed (503 / UNAVAILABLE).
        """
        after: tuple[str, str] | None = None
        while True:
            rows = await _read(self.cluster.watched, host_id, session_id, after, size)
            now = self._clock()
            yield [snapshot_of(self._current(r), policy, now) for r in rows]
            if len(rows) < size:
                return
            after = (rows[-1].record.kind, rows[-1].record.id)

    def _current(self, s: Stored, *, uncommitted: bool = True) -> Entity:
        """The entity ``s`` stores, with (``uncommitted``) what this replica holds of it and
        has not committed, and its owner's byte rates (this replica's own windows when it is
        the owner, else those the owner published), without adding it to memory."""
        r = s.record
        local = self._state.entities[Kind(r.kind)].get(r.id)
        e = Entity(Kind(r.kind), r.id, r.first_seen, r.last_seen)
        e.restore(r if local is None or not uncommitted else merge(local.record(), r))
        if local is not None and self.owns(local):
            e.rate_in, e.rate_out = local.rate_in, local.rate_out
        else:
            _owners_rates(e, s)
        return e

    def loading(self) -> str | None:
        """Why reads must wait (``None`` once the first shards are loaded)."""
        if self.loaded.is_set():
            return None
        return "the replica is taking its share of the shards from the store"

    async def run(self, engine: TransitionEngine, hub: WatchHub, stop: asyncio.Event) -> None:
        """Lease, follow, tick and emit until ``stop`` (see the module docstring); then emit
        what is left and release the leases. Store failures are logged and retried."""
        head = await asyncio.to_thread(self.cluster.outbox_head)
        hub.begin_at(max(0, head - RESUME_LOG), self.cluster.id)
        delivering = asyncio.create_task(self._deliver(hub, stop), name="lastactive-outbox")
        try:
            _, self._horizon = await asyncio.to_thread(self.cluster.changes, (), 0)
            while not self.loaded.is_set():
                try:
                    await self._lease(engine)
                    self.loaded.set()
                except Exception:  # the store is down: not ready until it is back
                    _log.exception("taking shard leases failed; retrying")
                    await asyncio.sleep(REPLICA_TICK_S)
            while not stop.is_set():
                await asyncio.sleep(REPLICA_TICK_S)
                try:
                    await self._turn(engine)
                except Exception:  # a bug or the store: ingest and queries go on
                    _log.exception("replica tick failed")
            with contextlib.suppress(Exception):
                await self._emit(engine, engine.tick())
            await asyncio.to_thread(self.cluster.leave)
        finally:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering

    async def _turn(self, engine: TransitionEngine) -> None:
        if time.monotonic() >= self._renew_at:
            await self._lease(engine)
        followed = await self._follow(engine)
        now = self._clock()
        self._rates_moved(followed, now)
        self._keep_foreign(self._state.touched(), now)  # before the engine takes them
        while True:  # slices of TICK_BUDGET evaluations, the loop free between them
            await self._emit(engine, engine.tick(TICK_BUDGET))
            if not engine.behind:
                break
            await asyncio.sleep(0)
        self._evict(now)

    def _rates_moved(self, followed: Iterable[Entity], now: int) -> None:
        """Mark for publishing (with the next emission) the owned entities whose byte rates
        at ``now`` (ns) moved by more than :data:`RATE_SLACK` from those last published: of
        ``followed`` (their stored totals just rose, or not) those measuring a rate, and
        those published with a rate (which decays once their bytes stop)."""
        rated, state = self._rated, self._state
        for e in itertools.chain([e for e in followed if e.rate_in or e.rate_out], list(rated)):
            if not state.tracked(e):
                rated.pop(e, None)  # purged
                continue
            was_in, was_out = rated.get(e, (0.0, 0.0))
            if _rate_moved(was_in, e.rate_in.per_second(now)) or _rate_moved(
                was_out, e.rate_out.per_second(now)
            ):
                self._moved[e] = None

    def _keep_foreign(self, entities: Iterable[Entity], now: int) -> None:
        """Note the entities this replica does not own among ``entities`` (reported or read
        at ``now``, ns), to evict them :data:`KEEP_FOREIGN_S` later."""
        foreign, held = self._foreign, self.held
        for e in entities:
            if shard_of(e.kind, e.id) not in held:
                foreign[e] = now
                foreign.move_to_end(e)

    def _evict(self, now: int) -> None:
        """Forget the entities not owned here and unused for :data:`KEEP_FOREIGN_S` (memory
        bounded by what this replica owns and what it is sent, not by the fleet); one not
        committed yet, or held by a hold, is tried again a period later."""
        horizon = now - int(KEEP_FOREIGN_S * NANOS)
        foreign = self._foreign
        while foreign:
            e, at = next(iter(foreign.items()))
            if at > horizon:
                return
            del foreign[e]
            if not self.owns(e) and not self._state.evict(e, now):
                foreign[e] = now

    async def _lease(self, engine: TransitionEngine) -> None:
        held, self.live = await asyncio.to_thread(self.cluster.lease_shards, self.held)
        self._renew_at = time.monotonic() + self.cluster.lease / 3
        before = self.held
        gained = sorted(s for s, epoch in held.items() if before.get(s) != epoch)
        lost = {s for s, epoch in before.items() if held.get(s) != epoch}
        self.held = held
        if lost:
            await self._forget(engine, lost)
        if gained:
            self.gained += len(gained)
            await self._adopt_shards(engine, gained)
        if time.monotonic() >= self._trim_at:
            self._trim_at = time.monotonic() + TRIM_EVERY_S
            await asyncio.to_thread(self.cluster.trim_outbox, OUTBOX_KEEP)

    async def _forget(self, engine: TransitionEngine, lost: set[int]) -> None:
        """The engine forgets what it evaluated in ``lost`` shards (a slice at a time)."""
        entities = iter(list(self._state.all_entities()))
        while chunk := list(itertools.islice(entities, ADOPT_SLICE * 10)):
            gone = [e for e in chunk if shard_of(e.kind, e.id) in lost]
            engine.forget(e for e in gone if e.condition is not None)
            self._state.unfollow(gone)
            for e in gone:
                self._rated.pop(e, None)
            now = self._clock()
            self._state.retally(gone, now)
            self._keep_foreign(gone, now)
            await asyncio.sleep(0)
        self._unsent = [t for t in self._unsent if shard_of(t.kind, t.id) not in lost]

    async def _adopt_shards(self, engine: TransitionEngine, shards: Sequence[int]) -> None:
        after: tuple[str, str] | None = None
        while True:
            page, after = await asyncio.to_thread(
                self.cluster.load_shards, shards, after, LOAD_PAGE
            )
            await self._merge(engine, page, every=True)
            if after is None:
                return

    async def _follow(self, engine: TransitionEngine) -> list[Entity]:
        """Merge the rows of this replica's shards written since the last call; the entities
        they made or changed."""
        if not self.held:
            return []
        rows, self._horizon = await asyncio.to_thread(
            self.cluster.changes, sorted(self.held), self._horizon
        )
        return await self._merge(engine, rows, every=False)

    async def _merge(
        self, engine: TransitionEngine, rows: list[Stored], *, every: bool
    ) -> list[Entity]:
        """Merge stored rows into state; the engine adopts each with its emitted condition
        (``every``) or only those it does not know yet (the others are touched by the merge
        and re-evaluated). Returns the entities merged."""
        merged: list[Entity] = []
        for i in range(0, len(rows), ADOPT_SLICE):
            chunk = rows[i : i + ADOPT_SLICE]
            entities = self._state.load((s.record for s in chunk), self._clock(), follow=True)
            for e, s in zip(entities, chunk, strict=True):
                if e.kind is not Kind.AGENT and (every or e.condition is None):
                    engine.adopt(e, condition_from_text(s.condition))
            merged += entities
            if len(rows) > ADOPT_SLICE:
                await asyncio.sleep(0)
        return merged

    async def _emit(self, engine: TransitionEngine, transitions: Iterable[Transition]) -> None:
        """Write the transitions (and those a failed write left) with what their entities,
        and those whose deadline or held flag moved, are left in, fenced; forget the shards
        found lost."""
        self._unsent.extend(transitions)
        self._moved.update(dict.fromkeys(engine.take_moved()))
        if not self._unsent and not self._moved:
            return
        entities, now = self._state.entities, self._clock()
        left: dict[tuple[str, str], Emitted] = {}
        rates: dict[Entity, tuple[float, float]] = {}
        for e in itertools.chain(
            (entities[Kind(t.kind)].get(t.id) for t in self._unsent), self._moved
        ):
            if e is not None and e.condition is not None:
                key = (str(e.kind), e.id)
                rate = rates[e] = (e.rate_in.per_second(now), e.rate_out.per_second(now))
                left[key] = (
                    *key, condition_text(e.condition), e.deadline, engine.is_held(e), *rate, now
                )  # fmt: skip
        try:
            lost = await asyncio.to_thread(
                self.cluster.emit, dict(self.held), self._unsent, list(left.values())
            )
        except Exception:
            if len(self._unsent) > UNSENT_MAX:
                _log.error("dropping %d transitions the store did not take",
                           len(self._unsent) - UNSENT_MAX)  # fmt: skip
                del self._unsent[:-UNSENT_MAX]
            raise
        self._unsent = []
        self._moved.clear()
        for e, rate in rates.items():
            if rate[0] or rate[1]:
                self._rated[e] = rate
            else:
                self._rated.pop(e, None)
        if lost:
            self.fenced += len(lost)
            _log.warning("shards %s are no longer this replica's: their transitions are "
                         "left to their new owner", sorted(lost))  # fmt: skip
            for s in lost:
                self.held.pop(s, None)
            await self._forget(engine, lost)

    async def _deliver(self, hub: WatchHub, stop: asyncio.Event) -> None:
        """Publish the outbox to ``hub`` in order, woken by ``NOTIFY`` (or every second)."""
        loop = asyncio.get_running_loop()
        woken = asyncio.Event()

        def wake() -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed
                loop.call_soon_threadsafe(woken.set)

        stopping = threading.Event()
        listener = threading.Thread(
            target=self.cluster.listen, args=(wake, stopping), name="lastactive-listen",
            daemon=True,
        )  # fmt: skip
        listener.start()
        try:
            while not stop.is_set():
                woken.clear()
                try:
                    rows = await asyncio.to_thread(self.cluster.outbox_after, hub.seq, OUTBOX_PAGE)
                except Exception:
                    _log.exception("reading the outbox failed; retrying")
                    rows = []
                _publish(hub, rows)
                if len(rows) < OUTBOX_PAGE:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), 1.0)
        finally:
            stopping.set()


def _owners_rates(e: Entity, s: Stored) -> None:
    """Give ``e`` the byte rates its owner published in ``s``, if it published any."""
    if s.rated_at:
        e.rate_in = PublishedRate(s.rate_in, s.rated_at)
        e.rate_out = PublishedRate(s.rate_out, s.rated_at)


def _rate_moved(published: float, now: float) -> bool:
    """Has a rate moved from ``published`` to ``now`` enough to publish (:data:`RATE_SLACK`;
    to or from 0 always is)?"""
    return abs(now - published) > RATE_SLACK * max(now, published)


async def _read(read: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``read`` (a query of the store) in a worker thread.

    Raises:
        StoreUnavailableError: it failed (503 / UNAVAILABLE; the reason is logged).
    """
    try:
        return await asyncio.to_thread(read, *args, **kwargs)
    except Exception as exc:  # psycopg's errors (an optional extra: not imported here)
        _log.warning("reading the store failed: %s", exc)
        raise StoreUnavailableError(f"the state store failed: {exc}") from exc


def _publish(hub: WatchHub, rows: list[tuple[int, Transition]]) -> None:
    """Publish outbox rows, each run of consecutive numbers at once (numbers of transactions
    that rolled back are missing)."""
    run: list[Transition] = []
    first = 0
    for seq, t in rows:
        if run and seq != first + len(run):
            hub.publish(run, first)
            run = []
        if not run:
            first = seq
        run.append(t)
    if run:
        hub.publish(run, first)
