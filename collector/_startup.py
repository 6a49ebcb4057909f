"""Loading the stored state with the ports already open (issue 15: loading and priming a
million sessions took ~50 s before the first export could be acknowledged).

``serve`` opens the store, loads the counter baselines (a stream's next point must count from
its baseline, so they come first), opens both ports and only then loads the entities: a page of
:data:`LOAD_PAGE` rows at a time read in a worker thread (on a connection of its own: commits
do not wait for it), merged into state and primed on the event loop :data:`LOAD_CHUNK` records
at a time, the loop yielded once a turn has taken :data:`TURN_S`. A turn is bounded by time,
not by a count of records, because records do not cost the same: the indexes keep a dict per
second, and a fleet whose sessions spread evenly over a few dozen seconds fills those dicts in
lockstep, so they all outgrow their tables within the same few dozen records (measured at 1M
sessions: 500-record slices took 75-148 ms there, ~25 ms elsewhere).

Meanwhile OTLP exports and agent events are applied and acknowledged as usual: an entity they
create is merged with its stored record when that page arrives (the store merges its commits
the same way), and re-evaluated then. Reads (queries, decisions, watch) answer 503 /
UNAVAILABLE with a retry delay until the load is done, since an answer from half the fleet
could wrongly say a host is unused; ``/readyz`` says the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from lastactive.collector._freeze import freeze_survivors
from lastactive.collector._state import ActivityState
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector.store import Store

__all__ = ["LOADING_RETRY_S", "LOAD_CHUNK", "LOAD_PAGE", "TURN_S", "StateLoader"]

_log = logging.getLogger(__name__)

LOAD_PAGE: Final = 5000
"""Rows read from the store per call (in the store's thread)."""
LOAD_CHUNK: Final = 10
"""Records merged into state and primed between looks at the time (~0.5 ms)."""
TURN_S: Final = 0.02
"""How long (seconds) the load holds the event loop before it yields (the turn's last chunk
may take it past this)."""
LOADING_RETRY_S: Final = 1.0
"""The retry delay (seconds) a read refused while loading carries."""


class StateLoader:
    """Loads ``store``'s entities into ``state`` and primes ``engine`` with them.

    Args:
        clock: ns since the epoch.
        timer: monotonic seconds, what a turn of the event loop is timed by.
    """

    def __init__(
        self,
        store: Store,
        state: ActivityState,
        engine: TransitionEngine,
        clock: Callable[[], int],
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._state = state
        self._engine = engine
        self._clock = clock
        self._timer = timer
        self.entities = 0
        """Entities loaded so far."""
        self.loaded = asyncio.Event()
        """Set once every stored entity is loaded."""
        self.seconds = 0.0
        """How long the load took (once done)."""

    def loading(self) -> str | None:
        """Why reads must wait (``None`` once the state is loaded)."""
        if self.loaded.is_set():
            return None
        return f"the collector is loading its stored state ({self.entities} entities so far)"

    async def run(self) -> None:
        """Load every stored entity, yielding the event loop every :data:`TURN_S`. Stopped
        (cancelled) while a page is read, it returns only once that read is done, so the store
        is not closed under its reader.

        Raises:
            Exception: the store failed while reading (``serve`` stops with it).
        """
        began = self._timer()
        store, after = self._store, None
        while True:
            reading = asyncio.ensure_future(asyncio.to_thread(store.load_page, after, LOAD_PAGE))
            try:
                page, after = await asyncio.shield(reading)
            except asyncio.CancelledError:
                await asyncio.wait({reading})
                if not reading.cancelled():
                    reading.exception()  # retrieved: a failure after the stop is moot
                raise
            turn = self._timer()
            for i in range(0, len(page), LOAD_CHUNK):
                loaded = self._state.load(page[i : i + LOAD_CHUNK], self._clock())
                self._engine.prime(loaded)
                self.entities += len(loaded)
                if self._timer() - turn >= TURN_S:
                    await asyncio.sleep(0)
                    turn = self._timer()
            await asyncio.sleep(0)  # the freeze gets a turn of its own
            freeze_survivors()  # each page once: full collections never walk the loaded state
            if after is None:
                break
        self.seconds = self._timer() - began
        self.loaded.set()
        _log.info("loaded %d entities in %.1f s", self.entities, self.seconds)
