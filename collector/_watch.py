"""Push: subscribers get a snapshot, then every transition that matches their filter.

The snapshot comes in pages (:data:`~lastactive.collector._transitions.SNAPSHOT_PAGE`
entities, ``more`` on all but the last), each evaluated as it is sent, so a fleet-wide watcher
does not hold the event loop (issue 15).

Each subscriber keeps what it has not read yet **coalesced per entity and field**: a second
change of the same field before the first was read becomes one transition (from the first's
``previous`` to the latest ``current``; none at all if it came back). So a subscriber that
reads slower than transitions happen falls behind by at most the entities that changed, not by
every transition, and catches up without a resync (issue 15: a 1024-transition queue
overflowed at 400 transitions/s over 100k sessions and every resync re-evaluated the fleet).
Only when more than :data:`QUEUE_MAX` entity fields wait (or it never reads) is what it has not
read dropped for a resync marker, and the stream then sends ``resync`` and a fresh snapshot, so
it is never silently wrong; until it reads the marker, a transition costs it O(1). The hub
takes at most ``max_subscribers`` (:class:`WatchLimitError` beyond), and
:meth:`WatchHub.close` ends every stream at shutdown. Both the gRPC ``Watch`` and the SSE
``/v1/watch`` stream :func:`watch_events`.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from lastactive.collector._transitions import Snapshot, Transition, TransitionEngine, matches

QUEUE_MAX: Final = 16384
"""Entity fields with an unread transition a subscriber may have before it is told to resync
(~200 bytes each)."""

KEEPALIVE_S: Final = 15.0
"""Seconds of silence after which the stream sends a keepalive (proxies drop idle streams)."""


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """One page of the current condition of every entity the watcher's filter matches;
    ``more``: further pages follow (the snapshot is whole at the first page without it)."""

    states: list[Snapshot]
    more: bool = False


@dataclass(frozen=True, slots=True)
class ResyncEvent:
    """The watcher fell behind and lost transitions; a fresh :class:`SnapshotEvent` follows."""


@dataclass(frozen=True, slots=True)
class KeepaliveEvent:
    """Nothing happened for :data:`KEEPALIVE_S` (proxies drop silent streams)."""


WatchEvent = SnapshotEvent | Transition | ResyncEvent | KeepaliveEvent
"""What :func:`watch_events` yields; the edges match on the type."""

RESYNC: Final = ResyncEvent()
"""Also the marker that replaces a full queue's contents."""
_KEEPALIVE: Final = KeepaliveEvent()
_CLOSED: Final = object()
"""Put in every queue by :meth:`WatchHub.close`: the stream ends."""


class WatchLimitError(Exception):
    """The hub has its maximum of subscribers; the edge refuses the watch, retryably."""


class Subscriber:
    """One watcher: its filter and what it has not read, coalesced per entity and field."""

    __slots__ = ("_wake", "behind", "host_id", "maxsize", "overflows", "pending", "session_id")

    def __init__(self, host_id: str | None, session_id: str | None, maxsize: int) -> None:
        self.host_id = host_id
        self.session_id = session_id
        self.maxsize = maxsize
        self.pending: OrderedDict[object, Transition | ResyncEvent | object] = OrderedDict()
        """(kind, id, field) -> the unread transition, oldest first; or one marker."""
        self._wake = asyncio.Event()
        self.overflows = 0
        self.behind = False
        """A resync marker (or the end) waits: nothing else goes in."""

    def offer(self, t: Transition) -> None:
        if self.behind or not matches(t.kind, t.id, t.host_id, self.host_id, self.session_id):
            return
        key = (t.kind, t.id, t.field)
        pending = self.pending
        first = pending.get(key)
        if first is None:
            if len(pending) >= self.maxsize:
                self._replace(RESYNC)
                self.overflows += 1
                return
            pending[key] = t
        else:
            assert isinstance(first, Transition)
            if first.previous == t.current:
                del pending[key]  # it came back before the subscriber saw it leave
            else:
                pending[key] = dataclasses.replace(t, previous=first.previous)
        self._wake.set()

    def _replace(self, marker: object) -> None:
        self.pending.clear()
        self.pending[marker] = marker
        self.behind = True
        self._wake.set()

    async def read(self, timeout: float) -> object:
        """The oldest unread item (a transition or a marker); ``None`` after ``timeout``
        seconds of nothing."""
        while not self.pending:
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                return None
        return self.pending.popitem(last=False)[1]


class WatchHub:
    """The set of subscribers; :meth:`publish` fans transitions out (on the event loop)."""

    def __init__(self, maxsize: int = QUEUE_MAX, max_subscribers: int = 256) -> None:
        self._maxsize = maxsize
        self._max_subscribers = max_subscribers
        self._subscribers: set[Subscriber] = set()
        self._closed = False

    def subscribe(self, host_id: str | None = None, session_id: str | None = None) -> Subscriber:
        """A new subscriber.

        Raises:
            WatchLimitError: the hub has its maximum of subscribers, or is closed.
        """
        if self._closed or len(self._subscribers) >= self._max_subscribers:
            raise WatchLimitError(
                f"the collector has its maximum of {self._max_subscribers} watchers; retry later"
                if not self._closed
                else "the collector is shutting down"
            )
        sub = Subscriber(host_id, session_id, self._maxsize)
        self._subscribers.add(sub)
        return sub

    def close(self) -> None:
        """End every stream (shutdown): each one's next read returns."""
        self._closed = True
        for sub in self._subscribers:
            sub._replace(_CLOSED)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, transitions: list[Transition]) -> None:
        for sub in list(self._subscribers):
            for t in transitions:
                sub.offer(t)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @property
    def queued(self) -> int:
        """Transitions waiting for all subscribers (bounded by subscribers x QUEUE_MAX)."""
        return sum(len(s.pending) for s in self._subscribers)

    @property
    def overflows(self) -> int:
        return sum(s.overflows for s in self._subscribers)


async def watch_events(
    hub: WatchHub,
    engine: TransitionEngine,
    host_id: str | None = None,
    session_id: str | None = None,
    keepalive: float = KEEPALIVE_S,
) -> AsyncIterator[WatchEvent]:
    """A snapshot, then matching transitions as they happen (see the module docstring); ends
    when the hub closes.

    Raises:
        WatchLimitError: at once, when the hub has its maximum of subscribers.
    """
    sub = hub.subscribe(host_id, session_id)  # before the snapshot: nothing falls between
    try:
        async for page in _snapshot(engine, host_id, session_id):
            yield page
        while True:
            item = await sub.read(keepalive)
            if item is None:
                yield _KEEPALIVE
            elif item is _CLOSED:
                return
            elif item is RESYNC:
                yield RESYNC
                sub.behind = False  # transitions from here on follow the snapshot
                async for page in _snapshot(engine, host_id, session_id):
                    yield page
            else:
                assert isinstance(item, Transition)
                yield item
    finally:
        hub.unsubscribe(sub)


async def _snapshot(
    engine: TransitionEngine, host_id: str | None, session_id: str | None
) -> AsyncIterator[SnapshotEvent]:
    """The snapshot's pages, ``more`` on all but the last; the loop runs between pages."""
    pages = engine.snapshot_pages(host_id, session_id)
    page = next(pages)
    for following in pages:
        yield SnapshotEvent(page, more=True)
        await asyncio.sleep(0)
        page = following
    yield SnapshotEvent(page)


async def open_watch(
    hub: WatchHub,
    engine: TransitionEngine,
    host_id: str | None = None,
    session_id: str | None = None,
) -> AsyncIterator[WatchEvent]:
    """:func:`watch_events`, subscribed now: an edge learns of the limit before it answers.

    Raises:
        WatchLimitError: the hub has its maximum of subscribers.
    """
    events = watch_events(hub, engine, host_id, session_id)
    first = await anext(events)

    async def chained() -> AsyncIterator[WatchEvent]:
        yield first
        async for event in events:
            yield event

    return chained()
