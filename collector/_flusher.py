"""Write-behind: every interval, the entities changed since the last flush go to the store in
one transaction, so writes are bounded by changed entities, not by the event rate (seeds 001 and
003: throttled, batched persistence; ANCHORS: Coder batches and de-duplicates)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from lastactive.collector._state import NANOS, ActivityState, Entity
from lastactive.collector.store import Store

_log = logging.getLogger(__name__)

PURGE_EVERY_S = 60.0
"""Seconds between retention purges (a scan of the sessions)."""


class Flusher:
    """Flushes ``state``'s dirty entities to ``store`` every ``interval`` seconds, and every
    :data:`PURGE_EVERY_S` forgets sessions ended more than ``retention_ns`` ago (and tells
    ``on_purge`` the time and which ones, for the rest of the core to forget them too).

    The snapshot is taken on the event loop (where state is mutated); the write runs in a
    worker thread. A failed write logs and puts the records back, so nothing is lost while the
    process lives. ``rows`` and ``seconds`` of the last flush are plain fields for metrics.
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
    ) -> None:
        self._state = state
        self._on_purge = on_purge
        self._store = store
        self._interval = interval
        self._retention_ns = retention_ns
        self._clock = clock
        self._next_purge = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.flushes = 0
        self.last_rows = 0
        self.last_seconds = 0.0

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="lastactive-flusher")

    async def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self._interval)
            await self.flush()
            now = self._clock()
            if now >= self._next_purge:
                self._next_purge = now + int(PURGE_EVERY_S * NANOS)
                await self.purge(now)

    async def purge(self, now: int) -> int:
        """Forget ended sessions past retention, in memory and in the store."""
        gone = self._state.purge(now, self._retention_ns)
        self._on_purge(now, gone)
        if gone:
            keys = [(str(e.kind), e.id) for e in gone]
            try:
                await asyncio.to_thread(self._store.delete, keys)
            except Exception:
                _log.exception("deleting %d purged sessions failed", len(gone))
        return len(gone)

    async def flush(self) -> int:
        """Write the changed entities now; returns how many rows were written."""
        records = self._state.take_dirty()
        if not records:
            return 0
        began = time.perf_counter()
        try:
            await asyncio.to_thread(self._store.save, records)
        except Exception:
            _log.exception("flush of %d entities failed; retrying next interval", len(records))
            self._state.mark_dirty(records)
            return 0
        self.flushes += 1
        self.last_rows = len(records)
        self.last_seconds = time.perf_counter() - began
        return len(records)

    async def stop(self) -> None:
        """Stop the loop, then flush what changed last (also when the loop never ran)."""
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.flush()
