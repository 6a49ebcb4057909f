"""Group commit: an export is answered once what it changed is in the store.

Every edge that changes state awaits :meth:`Flusher.durable` before it acknowledges (OTLP
``Export`` and the agent webhook): acknowledged means durable (issue 11). One commit takes every
entity changed since the previous one (and the counter baselines they were counted from), in
one transaction, and answers every export that was waiting for it, so writes stay bounded by
changed entities per commit rather than by events (seeds 001 and 003: batched persistence;
ANCHORS: Coder batches and de-duplicates). While one commit runs, the next group gathers; with
nobody waiting, changes are still written every ``interval`` (write-behind for what no client
waits on).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

from lastactive.collector._record import Counted, EntityRecord, StreamRecord
from lastactive.collector._state import NANOS, ActivityState, Entity
from lastactive.collector.store import Store

_log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0
"""Seconds between retention purges (each costs what expired since the last)."""
RECORD_SLICE = 5_000
"""Changed entities snapshotted per turn of the event loop (~2 us each)."""
CATCH_UPS = 4
"""Sliced rounds a commit's snapshot takes at most for the entities changed while it was
being made; whatever changed during the last round is snapshotted in one turn of the loop."""
RELEASE_SLICE = 20_000
"""Dropped counter streams freed per turn of the event loop (a few ms each)."""


class StoreUnavailableError(Exception):
    """The commit an export waited for failed: nothing it changed is lost from memory (it is
    written again with the next commit), but it is not durable, so the export must be answered
    retryably (UNAVAILABLE / 503)."""


_Commit = tuple[list["asyncio.Future[None]"], list[EntityRecord], list[StreamRecord], Counted]
"""What :meth:`Flusher._snapshot` gives a commit."""


def _latest(records: list[EntityRecord]) -> list[EntityRecord]:
    """``records`` with each entity once, at its last record, in first-seen order."""
    return list({(r.kind, r.id): r for r in records}.values())


class Flusher:
    """Commits ``state``'s changes to ``store``: at once for exports waiting in
    :meth:`durable`, else every ``interval`` seconds; and every :data:`PURGE_EVERY_S` forgets
    sessions ended more than ``retention_ns`` ago (telling ``on_purge`` the time and which
    ones, for the rest of the core to forget them too), then frees what was dropped a slice at
    a time with ``release`` (default ``state.release``; returns whether more remains).
    ``synchronous=False``: nobody waits (``LASTACTIVE_SYNCHRONOUS_COMMIT=false``).

    The snapshot is taken on the event loop (where state is mutated); the write runs in a
    worker thread. A failed write logs, puts the records back and fails the waiting exports
    with :class:`StoreUnavailableError`. ``flushes``, ``last_rows``, ``last_seconds`` and
    ``skipped`` (records the store could not hold) are plain fields for metrics.
    """

    def __init__(
        self,
        state: ActivityState,
        store: Store,
        interval: float,
        *,
        retention_ns: int,
        clock: Callable[[], int] = time.time_ns,
        on_purge: Callable[[int, list[Entity]], None] = lambda now, gone: None,
        release: Callable[[int], bool] | None = None,
        synchronous: bool = True,
    ) -> None:
        self._state = state
        self._synchronous = synchronous
        self._on_purge = on_purge
        self._release = state.release if release is None else release
        self._store = store
        self._interval = interval
        self._retention_ns = retention_ns
        self._clock = clock
        self._next_purge = 0
        self._stop = asyncio.Event()
        self._wake = asyncio.Event()
        self._waiters: list[asyncio.Future[None]] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.last_rows = 0
        self.last_seconds = 0.0
        self.skipped = 0
        self.failure: str | None = None
        """Why the last commit failed; ``None`` once one succeeds (``/readyz``)."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lastactive-flusher")

    async def durable(self) -> None:
        """Return once every change made to state before this call is committed.

        Without ``synchronous`` commit, returns at once (the change is written within
        ``interval``).

        Raises:
            StoreUnavailableError: the commit failed.
        """
        if not self._synchronous:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._interval)
            self._wake.clear()
            await self.flush()
            now = self._clock()
            if now >= self._next_purge:
                self._next_purge = now + int(PURGE_EVERY_S * NANOS)
                await self.purge(now)

    async def purge(self, now: int) -> int:
        """Forget ended sessions past retention, in memory and in the store (and counter
        baselines silent that long, when their generation rotates)."""
        gone, rotated = self._state.purge(now, self._retention_ns)
        self._on_purge(now, gone)
        keys = [(str(e.kind), e.id) for e in gone]
        try:
            async with self._lock:
                await asyncio.to_thread(
                    self._store.delete, keys, now - self._retention_ns if rotated else 0
                )
        except Exception:
            _log.exception("deleting %d purged sessions failed", len(gone))
        while self._release(RELEASE_SLICE):
            await asyncio.sleep(0)
        return len(gone)

    async def flush(self) -> int:
        """Commit the changes now and answer the exports waiting for them; returns how many
        entity rows were written."""
        async with self._lock:  # one commit at a time; the next group gathers meanwhile
            waiters, records, streams, counted = await self._snapshot()
            began = time.perf_counter()
            try:
                if records or streams or counted:
                    self.skipped += await asyncio.to_thread(
                        self._store.save, records, streams, counted
                    )
            except Exception as exc:
                _log.exception("commit of %d entities failed; retrying", len(records))
                self._state.mark_dirty(records, streams)
                self._state.restore_io_counted(counted)
                self.failure = f"the state store failed: {exc}"
                failure = StoreUnavailableError(self.failure)
                for w in waiters:
                    if not w.done():
                        w.set_exception(failure)
                return 0
            self.failure = None
        for w in waiters:
            if not w.done():
                w.set_result(None)
        if records:
            self.flushes += 1
            self.last_rows = len(records)
            self.last_seconds = time.perf_counter() - began
        return len(records)

    async def _snapshot(self) -> _Commit:
        """What one commit writes, as of one instant: the changed entities' records, the
        counter baselines they were counted from, the bytes counted, and the exports it
        answers (those whose change came before that instant).

        Made on the loop (where state changes) :data:`RECORD_SLICE` records at a time, the
        loop free between slices. A change made between two slices may reach an entity
        already snapshotted and the baseline it was counted from, so the entities changed
        meanwhile are snapshotted again (up to :data:`CATCH_UPS` sliced rounds), and the
        last of them are snapshotted together with the baselines, the counts and the
        waiting exports, in one turn of the loop (an entity snapshotted in two rounds keeps
        its later record, picked in a worker thread). Baselines ahead of an entity's bytes
        would lose the bytes on a crash (the retried export is stale); behind them, count
        them twice.
        """
        changed = self._state.take_changed()
        records: list[EntityRecord] = []
        rounds = 0
        while len(changed) > RECORD_SLICE and rounds < CATCH_UPS:
            rounds += 1
            pending = iter(changed)
            while made := [e.record() for e in itertools.islice(pending, RECORD_SLICE)]:
                records += made
                await asyncio.sleep(0)
            changed = self._state.take_changed()
        # The instant: from here to the counts taken, nothing else runs on the loop.
        records += [e.record() for e in changed]
        waiters, self._waiters = self._waiters, []
        streams, counted = self._state.take_dirty_streams(), self._state.take_io_counted()
        if rounds:  # the instant is taken: the rest may wait for a worker thread
            records = await asyncio.to_thread(_latest, records)
        return waiters, records, streams, counted

    async def stop(self) -> None:
        """Stop the loop, then commit what changed last (also when the loop never ran)."""
        self._stop.set()
        self._wake.set()
        if self._task is not None:
            await self._task
        await self.flush()
