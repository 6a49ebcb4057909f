"""Push: subscribers get a snapshot, then every transition that matches their filter.

Each subscriber has a bounded queue (:data:`QUEUE_MAX`). A subscriber that does not keep up
(or never reads) cannot grow the server's memory: when its queue is full, what it has not read
is dropped and a resync marker takes its place, and the stream then sends ``resync`` and a
fresh snapshot, so it is never silently wrong. Until it reads the marker, a transition costs it
O(1) (the snapshot will carry it). The hub takes at most ``max_subscribers``
(:class:`WatchLimitError` beyond), and :meth:`WatchHub.close` ends every stream at shutdown.
Both the gRPC ``Watch`` and the SSE ``/v1/watch`` stream :func:`watch_events`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

from lastactive.collector._transitions import Snapshot, Transition, TransitionEngine, matches

QUEUE_MAX: Final = 1024
"""Transitions a subscriber may have unread before it is told to resync."""

KEEPALIVE_S: Final = 15.0
"""Seconds of silence after which the stream sends a keepalive (proxies drop idle streams)."""


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """The current condition of every entity the watcher's filter matches."""

    states: list[Snapshot]


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
    """One watcher: its filter and its bounded queue."""

    __slots__ = ("behind", "host_id", "overflows", "queue", "session_id")

    def __init__(self, host_id: str | None, session_id: str | None, maxsize: int) -> None:
        self.host_id = host_id
        self.session_id = session_id
        self.queue: asyncio.Queue[Transition | ResyncEvent | object] = asyncio.Queue(maxsize)
        self.overflows = 0
        self.behind = False
        """A resync marker (or the end) waits in the queue: nothing else goes in."""

    def offer(self, t: Transition) -> None:
        if self.behind or not matches(t.kind, t.id, t.host_id, self.host_id, self.session_id):
            return
        try:
            self.queue.put_nowait(t)
        except asyncio.QueueFull:
            self._replace(RESYNC)
            self.overflows += 1

    def _replace(self, marker: object) -> None:
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(marker)
        self.behind = True


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
        """Transitions waiting in all queues (bounded by subscribers x QUEUE_MAX)."""
        return sum(s.queue.qsize() for s in self._subscribers)

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
        yield SnapshotEvent(engine.snapshot(host_id, session_id))
        while True:
            item: object = None
            with contextlib.suppress(TimeoutError):
                item = await asyncio.wait_for(sub.queue.get(), keepalive)
            if item is None:
                yield _KEEPALIVE
            elif item is _CLOSED:
                return
            elif item is RESYNC:
                yield RESYNC
                sub.behind = False  # transitions from here on follow the snapshot
                yield SnapshotEvent(engine.snapshot(host_id, session_id))
            else:
                assert isinstance(item, Transition)
                yield item
    finally:
        hub.unsubscribe(sub)


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
