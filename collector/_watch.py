"""Push: subscribers get a snapshot, then every transition that matches their filter.

The snapshot comes in pages (:data:`~lastactive.collector._transitions.SNAPSHOT_PAGE`
entities, ``more`` on all but the last), each evaluated as it is sent, so a fleet-wide watcher
does not hold the event loop (issue 15).

Each subscriber gets every transition, in order, while fewer than :data:`QUEUE_MAX` wait for
it (a watcher that was away a moment, or whose replica was stalled, misses none: issue 13).
Beyond that, what it has not read is **coalesced per entity and field** until it has read
everything: a second change of the same field before the first was read becomes one transition
(from the first's ``previous`` to the latest ``current``; none at all if it came back). So a
subscriber that reads slower than transitions happen falls behind by at most the entities that
changed, not by every transition, and catches up without a resync (issue 15: a 1024-transition queue
overflowed at 400 transitions/s over 100k sessions and every resync re-evaluated the fleet).
Only when more than :data:`QUEUE_MAX` entity fields wait (or it never reads) is what it has not
read dropped for a resync marker, and the stream then sends ``resync`` and a fresh snapshot, so
it is never silently wrong; until it reads the marker, a transition costs it O(1). The hub
takes at most ``max_subscribers`` (:class:`WatchLimitError` beyond), and
:meth:`WatchHub.close` ends every stream at shutdown. Both the gRPC ``Watch`` and the SSE
``/v1/watch`` stream :func:`watch_events`. The snapshot's pages come from a
:data:`SnapshotPages` source: this process's engine (:func:`engine_pages`), or on a replica the
store, so a watcher on any replica is shown every replica's entities (issue 13).

**Resume** (issue 13): the hub numbers every transition it publishes and keeps the last
:data:`RESUME_LOG` of them. A transition event and a snapshot's last page carry an event id
(``<hub epoch>.<seq>``: SSE ``id:``, gRPC ``event_id``), a watermark: every transition numbered
up to it is in what the watcher has been sent. A watcher that reconnects with that id
(``Last-Event-ID`` / ``after_event_id``) gets the transitions after it that match its filter,
coalesced as above, and no snapshot: no gap, and no duplicate unless a transition was coalesced
while the watcher was behind (then it may come again). An id the hub cannot resume from (another
process's, or older than the log) gets ``resync`` and a snapshot, as a watcher that fell behind.
"""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import itertools
import secrets
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Final

from lastactive.collector._state import Kind
from lastactive.collector._transitions import (
    Snapshot,
    Transition,
    TransitionEngine,
    TransitionField,
    matches,
)

SnapshotPages = Callable[[str | None, str | None], AsyncIterator[list[Snapshot]]]
"""``(host_id, session_id)`` -> a watch snapshot's pages (at least one, maybe empty), each
evaluated when it is asked for: what :func:`watch_events` shows a new or resynced watcher."""


def engine_pages(engine: TransitionEngine) -> SnapshotPages:
    """The snapshot pages of this process's ``engine``
    (:meth:`~lastactive.collector._transitions.TransitionEngine.snapshot_pages`)."""

    async def pages(host_id: str | None, session_id: str | None) -> AsyncIterator[list[Snapshot]]:
        for page in engine.snapshot_pages(host_id, session_id):
            yield page

    return pages


QUEUE_MAX: Final = 16384
"""Entity fields with an unread transition a subscriber may have before it is told to resync
(~200 bytes each)."""

RESUME_LOG: Final = 65536
"""Transitions kept for watchers that reconnect (~200 bytes each; ~65 s at 1000/s)."""

_Logged = tuple[int, int, str, str, str | None, str, str, str, str, int | None]
"""A transition in the resume log: its number, then its fields, each a plain ``str``,
``int`` or ``None``."""
_PLAIN: Final[dict[str, str]] = {str.__str__(m): str.__str__(m) for m in (*Kind, *TransitionField)}
"""A kind's or field's name as a plain ``str`` (looked up by the enum member too)."""


def _logged(n: int, t: Transition) -> _Logged:
    """Transition ``n`` as the resume log keeps it: a tuple of values the cyclic GC does not
    track (plain strings, not enum members), which CPython stops tracking at its first
    collection, so the log never reaches the oldest generation. Issue 15: at 1M sessions with
    ~10k transitions/s the logged transitions and their pairs were ~90 % of what each full
    collection walked, 11-16 ms every 1.5 s."""
    kind, field = t.kind, t.field
    return (
        n,
        t.at,
        _PLAIN.get(kind, kind),
        t.id,
        t.host_id,
        _PLAIN[field],
        t.previous,
        t.current,
        t.reason,
        t.hibernate_at,
    )


def _transition(entry: _Logged) -> Transition:
    """A logged transition back (:func:`_logged`)."""
    _, at, kind, id_, host_id, field, previous, current, reason, hibernate_at = entry
    return Transition(
        at, kind, id_, host_id, TransitionField(field), previous, current, reason, hibernate_at
    )


KEEPALIVE_S: Final = 15.0
"""Seconds of silence after which the stream sends a keepalive (proxies drop idle streams)."""


@dataclass(frozen=True, slots=True)
class SnapshotEvent:
    """One page of the current condition of every entity the watcher's filter matches;
    ``more``: further pages follow (the snapshot is whole at the first page without it, which
    carries the ``event_id`` to resume after)."""

    states: list[Snapshot]
    more: bool = False
    event_id: str | None = None


@dataclass(frozen=True, slots=True)
class TransitionEvent:
    """A transition as sent to one watcher, with the event id to resume after it."""

    transition: Transition
    event_id: str


@dataclass(frozen=True, slots=True)
class ResyncEvent:
    """The watcher fell behind and lost transitions; a fresh :class:`SnapshotEvent` follows."""


@dataclass(frozen=True, slots=True)
class KeepaliveEvent:
    """Nothing happened for :data:`KEEPALIVE_S` (proxies drop silent streams)."""


WatchEvent = SnapshotEvent | TransitionEvent | ResyncEvent | KeepaliveEvent
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

    __slots__ = (
        "_wake", "behind", "coalescing", "host_id", "maxsize", "overflows", "pending", "seen",
        "session_id", "skip_to",
    )  # fmt: skip

    def __init__(
        self, host_id: str | None, session_id: str | None, maxsize: int, seen: int = 0
    ) -> None:
        self.host_id = host_id
        self.session_id = session_id
        self.maxsize = maxsize
        self.pending: OrderedDict[object, tuple[int, Transition] | object] = OrderedDict()
        """Unread transitions, oldest first, as ``(seq, transition)``: keyed ``((kind, id,
        field), seq)`` each, or, :attr:`coalescing`, ``(kind, id, field)`` with the seq of its
        first unread change; or one marker."""
        self.seen = seen
        """The seq of the last transition offered (matching or not)."""
        self._wake = asyncio.Event()
        self.overflows = 0
        self.skip_to = 0
        """Transitions numbered up to this were sent on another replica (a resume)."""
        self.coalescing = False
        """More than ``maxsize`` waited: what waits is coalesced until all is read."""
        self.behind = False
        """A resync marker (or the end) waits: nothing else goes in."""

    def offer(self, t: Transition, seq: int = 0) -> None:
        """Take transition number ``seq`` if it matches the filter: as it is while fewer than
        ``maxsize`` wait, else coalesced with what waits for the same entity field."""
        self.seen = max(seq, self.seen)
        if (
            seq <= self.skip_to
            or self.behind
            or not matches(t.kind, t.id, t.host_id, self.host_id, self.session_id)
        ):
            return
        key = (t.kind, t.id, t.field)
        pending = self.pending
        if not self.coalescing:
            if len(pending) < self.maxsize:
                pending[(key, seq)] = (seq, t)  # every transition, in order
                self._wake.set()
                return
            self._coalesce()
        entry = pending.get(key)
        if entry is None:
            if len(pending) >= self.maxsize:
                self._replace(RESYNC)
                self.overflows += 1
                return
            pending[key] = (seq, t)
        else:
            assert isinstance(entry, tuple)
            first_seq, first = entry
            if first.previous == t.current:
                del pending[key]  # it came back before the subscriber saw it leave
            else:
                pending[key] = (first_seq, dataclasses.replace(t, previous=first.previous))
        self._wake.set()

    def _coalesce(self) -> None:
        """Fold what waits per entity and field (at the place of its first change) and
        coalesce from now on, until the subscriber has read everything."""
        waiting, seen = list(self.pending.values()), self.seen
        self.pending.clear()
        self.coalescing = True
        for entry in waiting:
            assert isinstance(entry, tuple)
            seq, t = entry
            self.offer(t, seq)
        self.seen = seen

    @property
    def watermark(self) -> int:
        """Every transition numbered up to this is read, coalesced away or not for this
        subscriber (what it has not read is in seq order of its first change)."""
        for entry in self.pending.values():
            return entry[0] - 1 if isinstance(entry, tuple) else self.seen
        return self.seen

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
        item = self.pending.popitem(last=False)[1]
        if not self.pending:
            self.coalescing = False
        return item[1] if isinstance(item, tuple) else item


class WatchHub:
    """The set of subscribers; :meth:`publish` fans transitions out (on the event loop)."""

    def __init__(
        self,
        maxsize: int = QUEUE_MAX,
        max_subscribers: int = 256,
        resume_log: int = RESUME_LOG,
        epoch: str | None = None,
    ) -> None:
        self._maxsize = maxsize
        self._max_subscribers = max_subscribers
        self._subscribers: set[Subscriber] = set()
        self._closed = False
        self.epoch = secrets.token_hex(4) if epoch is None else epoch
        """This hub's part of every event id: another process's ids are not resumed."""
        self.seq = 0
        """The number of the last transition published."""
        self.start = 0
        """The number before the first transition this hub published (:meth:`begin_at`)."""
        self.shared = False
        """Numbers come from a shared outbox (:meth:`begin_at`): an id from another replica
        may be ahead of this hub, which then resumes once it gets there."""
        self._log: deque[_Logged] = deque(maxlen=resume_log)

    def subscribe(self, host_id: str | None = None, session_id: str | None = None) -> Subscriber:
        """A new subscriber, which gets what is published from now on.

        Raises:
            WatchLimitError: the hub has its maximum of subscribers, or is closed.
        """
        if self._closed or len(self._subscribers) >= self._max_subscribers:
            raise WatchLimitError(
                f"the collector has its maximum of {self._max_subscribers} watchers; retry later"
                if not self._closed
                else "the collector is shutting down"
            )
        sub = Subscriber(host_id, session_id, self._maxsize, self.seq)
        self._subscribers.add(sub)
        return sub

    def event_id(self, seq: int) -> str:
        return f"{self.epoch}.{seq}"

    def replay(self, sub: Subscriber, after: str | None) -> bool:
        """Offer ``sub`` the logged transitions after event id ``after``; False (nothing
        offered) when there is none or the hub cannot resume from it."""
        epoch, _, number = (after or "").partition(".")
        if epoch != self.epoch or not number.isdigit():
            return False
        seq = int(number)
        log = self._log
        oldest = log[0][0] if log else self.seq + 1
        if seq > self.seq and self.shared:  # another replica has published further already
            sub.pending.clear()
            sub.seen = sub.skip_to = seq
            return True
        if not self.start <= seq <= self.seq or seq < oldest - 1:
            return False  # transitions after it have left the log (or it is not ours)
        sub.pending.clear()
        first = bisect.bisect_right(log, seq, key=itemgetter(0))  # numbers may have gaps
        for entry in itertools.islice(log, first, None):
            sub.offer(_transition(entry), entry[0])
        sub.seen = self.seq
        return True

    def close(self) -> None:
        """End every stream (shutdown): each one's next read returns."""
        self._closed = True
        for sub in self._subscribers:
            sub._replace(_CLOSED)

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def begin_at(self, seq: int, epoch: str) -> None:
        """Number what is published from ``seq + 1``, in event ids named ``epoch`` (before the
        first publish: a replica on a shared store takes the outbox's numbers and name)."""
        self.start = self.seq = seq
        self.epoch = epoch
        self.shared = True

    def publish(self, transitions: list[Transition], first: int | None = None) -> None:
        """Number (from ``first``, above :attr:`seq`; default the next number) and log
        ``transitions``, and offer them to every subscriber."""
        first = self.seq + 1 if first is None else first
        self.seq = first + len(transitions) - 1
        self._log.extend(map(_logged, range(first, self.seq + 1), transitions))
        for sub in list(self._subscribers):
            for n, t in enumerate(transitions, first):
                sub.offer(t, n)

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
    pages: SnapshotPages,
    host_id: str | None = None,
    session_id: str | None = None,
    keepalive: float = KEEPALIVE_S,
    after: str | None = None,
) -> AsyncIterator[WatchEvent]:
    """A snapshot, then matching transitions as they happen (see the module docstring); ends
    when the hub closes. ``after``: the event id a reconnecting watcher last got (resume).

    Raises:
        WatchLimitError: at once, when the hub has its maximum of subscribers.
        StoreUnavailableError: a snapshot's page could not be read (a replica's store failed).
    """
    sub = hub.subscribe(host_id, session_id)  # before the snapshot: nothing falls between
    try:
        if hub.replay(sub, after):
            yield _KEEPALIVE  # resumed: the stream starts now, whether anything was missed
        else:
            if after is not None:
                yield RESYNC  # cannot resume from it: start over, as a watcher behind would
            async for page in _snapshot(hub, sub, pages, host_id, session_id):
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
                async for page in _snapshot(hub, sub, pages, host_id, session_id):
                    yield page
            else:
                assert isinstance(item, Transition)
                yield TransitionEvent(item, hub.event_id(sub.watermark))
    finally:
        hub.unsubscribe(sub)


async def _snapshot(
    hub: WatchHub,
    sub: Subscriber,
    pages: SnapshotPages,
    host_id: str | None,
    session_id: str | None,
) -> AsyncIterator[SnapshotEvent]:
    """The snapshot's pages, ``more`` on all but the last; the loop runs between pages. The
    last carries the event id of what the snapshot shows: every transition until the first
    page (later ones wait in ``sub``)."""
    seq = hub.seq
    source = pages(host_id, session_id)
    page = await anext(source)
    async for following in source:
        yield SnapshotEvent(page, more=True)
        await asyncio.sleep(0)
        page = following
    yield SnapshotEvent(page, event_id=hub.event_id(seq))


async def open_watch(
    hub: WatchHub,
    pages: SnapshotPages,
    host_id: str | None = None,
    session_id: str | None = None,
    after: str | None = None,
) -> AsyncIterator[WatchEvent]:
    """:func:`watch_events`, subscribed now: an edge learns of the limit before it answers.

    Raises:
        WatchLimitError: the hub has its maximum of subscribers.
        StoreUnavailableError: the snapshot's first page could not be read.
    """
    events = watch_events(hub, pages, host_id, session_id, after=after)
    first = await anext(events)

    async def chained() -> AsyncIterator[WatchEvent]:
        yield first
        async for event in events:
            yield event

    return chained()
