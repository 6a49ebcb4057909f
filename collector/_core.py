"""What the edges translate for: the pure core's parts, made once by ``serve``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from lastactive.collector._admission import Admission
from lastactive.collector._auth import Credentials
from lastactive.collector._ingest import Ingest, Outcome, Slices
from lastactive.collector._paging import sessions_page, stored_sessions_page
from lastactive.collector._replica import Replica
from lastactive.collector._sliced import on_loop
from lastactive.collector._state import ActivityState, EntityView, Kind, PageKey
from lastactive.collector._stats import IngestStats
from lastactive.collector._transitions import TICK_BUDGET, Snapshot, TransitionEngine
from lastactive.collector._watch import WatchEvent, WatchHub, engine_pages, open_watch
from lastactive.collector.policy import Decisions, Policy


async def _in_memory_only() -> None:
    """No store: nothing to wait for (tests and benchmarks of the core alone)."""


def _ready() -> str | None:
    return None


async def in_memory(kind: Kind, key: str) -> None:
    """One process: every entity is in memory."""


@dataclass(frozen=True, slots=True)
class Core:
    """The ingest (and its state), the idle policy, transitions and their subscribers, and the
    clock (ns since the epoch) every edge reads "now" from; ``durable`` returns once what
    changed so far is committed (an edge awaits it before acknowledging; raises
    :class:`~lastactive.collector._flusher.StoreUnavailableError`), ``admission`` bounds the
    exports in flight, ``credentials`` says who may call (none configured: anyone)."""

    ingest: Ingest
    policy: Policy
    engine: TransitionEngine
    hub: WatchHub
    clock: Callable[[], int]
    stats: IngestStats = field(default_factory=IngestStats)
    durable: Callable[[], Awaitable[None]] = _in_memory_only
    admission: Admission = field(default_factory=Admission)
    credentials: Credentials = field(default_factory=Credentials)
    unready: Callable[[], str | None] = _ready
    """Why the service cannot take work now (the store fails its commits, the state is still
    loading), ``None`` when it can (``/readyz``)."""
    loading: Callable[[], str | None] = _ready
    """Why reads must wait (the stored state is still loading:
    :mod:`lastactive.collector._startup`), ``None`` when they can be answered."""
    replica: Replica | None = None
    """This process's part among replicas on a shared store (``None``: it is alone)."""
    fetch: Callable[[Kind, str], Awaitable[None]] = in_memory
    """Bring one entity's committed record into memory before it is read (a replica on a
    shared store holds only its own shards' entities and what it received:
    :meth:`~lastactive.collector._replica.Replica.fetch`)."""

    @property
    def state(self) -> ActivityState:
        return self.ingest.state

    async def apply(self, slices: Slices) -> Outcome:
        """Apply an export (:meth:`~lastactive.collector._ingest.Ingest.metrics_sliced`, ...)
        one slice at a time with the event loop free between them, so queries are answered
        while a large export is applied (issue 15); its outcome."""
        return await on_loop(slices)

    async def decisions(self, within_ns: int, limit: int | None) -> Decisions:
        """:func:`~lastactive.collector.policy.decide` now over every entity (``/v1/decisions``,
        gRPC ``Decisions``): this process's engine, a slice per turn of the event loop
        (without waiting for its tick: :meth:`~lastactive.collector._transitions.
        TransitionEngine.decisions_sliced`), or on a
        replica the shared index (:meth:`~lastactive.collector._replica.Replica.decisions`).

        Raises:
            StoreUnavailableError: a replica could not read the store.
        """
        if self.replica is None:
            return await on_loop(self.engine.decisions_sliced(self.clock(), within_ns, limit))
        return await self.replica.decisions(self.policy, self.clock(), within_ns, limit)

    async def catch_up(self) -> None:
        """Tick the transition engine until it is not behind, :data:`~lastactive.collector.
        _transitions.TICK_BUDGET` evaluations at a time with the event loop free between
        them, and publish the transitions to the watchers (``serve``'s tick): what came due
        since the last tick (a fleet's sessions often go idle in the same second) is evaluated
        in slices (issue 15: 16k at once at 1M sessions, ~180 ms)."""
        engine = self.engine
        while True:
            transitions = engine.tick(TICK_BUDGET)
            if transitions:
                self.hub.publish(transitions)
            if not engine.behind:
                return
            await asyncio.sleep(0)

    async def sessions_page(
        self, now: int, host_id: str | None, limit: int, trusted_only: bool, page_token: str
    ) -> tuple[list[EntityView], str]:
        """A page of sessions, most recent first, and the next page's token ("" on the last):
        from memory (:func:`~lastactive.collector._paging.sessions_page`), or on a replica
        from the store (:meth:`~lastactive.collector._replica.Replica.sessions`).

        Raises:
            PageTokenError: ``page_token`` is not one this collector made.
            StoreUnavailableError: a replica could not read the store.
        """
        replica = self.replica
        if replica is None:
            return await on_loop(
                sessions_page(self.state, now, host_id, limit, trusted_only, page_token)
            )

        def find(n: int, after: PageKey | None) -> Awaitable[list[EntityView]]:
            return replica.sessions(now, host_id, n, trusted_only, after)

        return await stored_sessions_page(find, limit, page_token)

    async def open_watch(
        self, host_id: str | None, session_id: str | None, after: str | None
    ) -> AsyncIterator[WatchEvent]:
        """:func:`~lastactive.collector._watch.open_watch` on this collector's hub and
        snapshot pages, once this process's engine has caught up (:meth:`catch_up`): so the
        snapshot's event id covers the transitions of every change the snapshot shows, and a
        watcher resuming from it is not sent again, as news, what the snapshot already showed
        (a new session's first evaluation, when the tick had not run yet). A replica's
        snapshot reads the store, which its engine writes as it goes.

        Raises:
            WatchLimitError: the hub has its maximum of subscribers.
            StoreUnavailableError: the snapshot's first page could not be read.
        """
        if self.replica is None:
            await self.catch_up()
        return await open_watch(self.hub, self.snapshot_pages, host_id, session_id, after=after)

    def snapshot_pages(
        self, host_id: str | None, session_id: str | None
    ) -> AsyncIterator[list[Snapshot]]:
        """A watch snapshot's pages (:data:`~lastactive.collector._watch.SnapshotPages`):
        from this process's engine, or on a replica from the store
        (:meth:`~lastactive.collector._replica.Replica.snapshot_pages`).

        Raises:
            StoreUnavailableError: (iterating) a replica could not read the store.
        """
        if self.replica is None:
            return engine_pages(self.engine)(host_id, session_id)
        return self.replica.snapshot_pages(self.policy, host_id, session_id)
