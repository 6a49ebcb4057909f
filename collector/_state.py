"""Last-activity state per session, agent and host: the pure core of the collector.

No I/O and no clock of its own: every timestamp is an ``int`` of nanoseconds since the Unix
epoch (UTC), as in OTLP, and "now" is passed in. The receivers translate OTLP into the calls
below; the store persists :class:`EntityRecord` snapshots; the APIs read :class:`EntityView`.

Rules (ANCHORS, "OTLP facts" and "Lessons"):

* every timestamp is a max-register: retries, replays and reordering never move it backwards
  (``first_seen`` is the matching min-register);
* a timestamp more than ``max_skew_ns`` in the future is clamped to the receive time, and an
  unset one (0) is the receive time;
* a cumulative counter counts only when its value rose against the previous point of the same
  stream; a lower value or a new start time is a reset; a point not newer than the last one seen
  for its stream is dropped; a delta point counts when its value is > 0.
"""

from __future__ import annotations

import bisect
import enum
import hashlib
import heapq
import itertools
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from operator import itemgetter
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

from lastactive.collector._activity import CLASS_OF, idle_since, latest, latest_by_class, sources_of
from lastactive.collector._ages import CLASS_BITS, RECENT_S, IdleHistogram, RecentClasses
from lastactive.collector._generations import Generations
from lastactive.collector._interned import Interned
from lastactive.collector._recency import RecencyIndex
from lastactive.collector._record import (
    HOLD_GRACE_NS,
    INT64_MAX,
    Counted,
    EntityRecord,
    StreamRecord,
    StreamRise,
    merge,
)
from lastactive.collector._sliced import Sliced, mapped, whole
from lastactive.collector._split_map import SplitMap
from lastactive.conventions import (
    IDLE_CLASSES,
    SOURCES,
    ActivityClass,
    AgentStatus,
    AgentTurn,
    HoldKind,
    Level,
    Source,
)

if TYPE_CHECKING:
    from lastactive.collector._transitions import Condition
    from lastactive.collector.policy import Rules

_ENGAGEMENT: Final = frozenset({ActivityClass.ENGAGEMENT})
_COUNTED: Final = sources_of(IDLE_CLASSES)
_ENGAGING: Final = sources_of(_ENGAGEMENT)
_SOURCE_BITS: Final = {src: CLASS_BITS[cls] for src, cls in CLASS_OF.items()}

NANOS: Final = 1_000_000_000
RATE_WINDOW_NS: Final = 30 * NANOS
"""Bytes/second are averaged over this rolling window (seed 003: "last 30s window")."""
_RATE_WINDOW_S: Final = RATE_WINDOW_NS // NANOS
VIEWS_SLICE: Final = 256
"""Views a page of sessions makes per slice (~5 us each: a slice holds the loop ~1.3 ms)."""


Kind = Level
"""The three levels state is kept at: seed 000's levels, the same as the sources'."""


class EntityLimitError(ValueError):
    """A new entity beyond ``max_entities``; the message says so (ingest rejects the item)."""


class ProcessStatus(enum.StrEnum):
    """A session's process as the APIs show it."""

    RUNNING = "running"
    EXITED = "exited"
    LOST = "lost"
    """Shown, never stored: running, but its liveness lapsed past the policy's ``lost_after``
    (the wrapper died without reporting an exit)."""


class Identity(NamedTuple):
    """Who a piece of telemetry is about; ``None`` where it does not say. A tuple, so hashing
    it (per data point, in the ingest cache) stays in C."""

    session_id: str | None = None
    agent_id: str | None = None
    host_id: str | None = None
    service_name: str | None = None

    @property
    def known(self) -> bool:
        """True when it names a session, an agent or a host."""
        return bool(self.session_id or self.agent_id or self.host_id)


class Hold(NamedTuple):
    """Something holding an entity up: ``until`` in ns since the epoch, 0 = until released;
    ``since``: when it was last reported (ns); ``reason``: what the holder said it is doing."""

    kind: str
    id: str
    until: int
    since: int
    reason: str | None = None


class _RateWindow:
    """Bytes over the last :data:`RATE_WINDOW_NS`, in one bucket per second (of the time a
    delta is reported at; a delta older than the newest bucket joins it). At most
    ``RATE_WINDOW_NS`` / 1 s + 1 buckets, however many streams report into it (a host's
    window takes every one of its sessions' bytes: issue 15), and a running total, so
    :meth:`per_second` costs no more than the buckets at the window's two edges. A bucket
    saturates at ``INT64_MAX`` bytes (a client may send any counter)."""

    __slots__ = ("_items", "_total")

    def __init__(self) -> None:
        self._items = array("q")
        """Flat ``[second, bytes, second, bytes, ...]``, oldest first (seconds since the
        epoch): machine integers, not int objects (issue 15: as a list, ~80 bytes a second of
        the window, ~2.5 KB for a session writing every second)."""
        self._total = 0

    def add(self, t: int, delta: int) -> None:
        second = t // NANOS
        items = self._items
        if items and items[-2] >= second:
            was = items[-1]
            bucket = was + delta
            items[-1] = bucket = bucket if bucket < INT64_MAX else INT64_MAX
            self._total += bucket - was
            return
        delta = min(delta, INT64_MAX)
        items.append(second)
        items.append(delta)
        self._total += delta
        horizon = second - _RATE_WINDOW_S
        if items[0] <= horizon:
            drop = 0
            while items[drop] <= horizon:
                self._total -= items[drop + 1]
                drop += 2
            del items[:drop]

    def __bool__(self) -> bool:
        """False when nothing moved in the window as of the last append (a cheap filter)."""
        return bool(self._items)

    def lapsed(self, now: int) -> bool:
        """Nothing in the window at ``now`` (ns) or after it: it reads 0 until the next add."""
        items = self._items
        return not items or items[-2] <= now // NANOS - _RATE_WINDOW_S

    def per_second(self, now: int) -> float:
        """Bytes per second over the window's seconds in ``(now - window, now]``."""
        items = self._items
        if not items:
            return 0.0
        second = now // NANOS
        horizon = second - _RATE_WINDOW_S
        total = self._total
        n = len(items)
        i = 0
        while i < n and items[i] <= horizon:  # older than the window: not counted
            total -= items[i + 1]
            i += 2
        j = n - 2
        while j >= i and items[j] > second:  # after now (a query of an earlier time)
            total -= items[j + 1]
            j -= 2
        return max(total, 0) * NANOS / RATE_WINDOW_NS


class PublishedRate(_RateWindow):
    """A rate measured by another replica (the owner of the entity's shard: issue 13):
    ``value`` bytes/s from ``since`` (ns), for one window; 0 after it (the owner publishes
    again as its rate moves, so a newer one replaces it well before)."""

    __slots__ = ("_until", "_value")

    def __init__(self, value: float, since: int) -> None:
        super().__init__()
        self._value = value
        self._until = since + RATE_WINDOW_NS

    def __bool__(self) -> bool:
        return self._value > 0

    def per_second(self, now: int) -> float:
        return self._value if now < self._until else 0.0

    def lapsed(self, now: int) -> bool:
        return now >= self._until


_NO_HOLDS: Final[Mapping[str, tuple[int, int]]] = MappingProxyType({})
"""The holds of every entity that never had one (an empty dict costs 64 bytes a session)."""


def _own_holds(e: Entity) -> dict[str, tuple[int, int]]:
    """``e``'s holds as a dict of its own, to write to."""
    holds = e.holds
    if not isinstance(holds, dict):
        holds = e.holds = dict(holds)
    return holds


class _NoRate(_RateWindow):
    """The type of :data:`_NO_RATE` (so one type test tells an entity's own window from it)."""

    __slots__ = ()


_NO_RATE: Final = _NoRate()
"""The rate window of every entity that never moved bytes (most sessions never report I/O):
shared, always empty; :meth:`ActivityState.io` gives an entity its own before adding."""


def _release_lapsed(e: Entity, now: int) -> None:
    """Give a session's rate windows that lapsed at ``now`` (ns) back for :data:`_NO_RATE`
    (they read 0 until the next bytes, which start a new one). Run at each of its recent-
    activity checks (:class:`~lastactive.collector._ages.RecentClasses`), which come at most
    ``RECENT_S`` after its last activity: a session that stopped moving bytes keeps no window
    (issue 15: ~250 bytes each, ~600 for one with a bucket every second; a fleet's sessions are
    mostly quiet: ``benchmarks/session_memory.py``)."""
    if e.rate_in is not _NO_RATE and e.rate_in.lapsed(now):
        e.rate_in = _NO_RATE
    if e.rate_out is not _NO_RATE and e.rate_out.lapsed(now):
        e.rate_out = _NO_RATE


_SHARED_NAMES_MAX: Final = 4096
"""Sets of source names shared at most (ingest takes only the conventions' sources, but a
store's rows may name any: past this many sets, an entity keeps a tuple of its own)."""
_SHARED_NAMES: Final = Interned[tuple[str, ...]](
    _SHARED_NAMES_MAX, lambda names: tuple(sys.intern(name) for name in names)
)
"""The one tuple of sorted source names every entity with these sources keeps."""


_GAUGES_MAX: Final = 32
"""Last-time gauges (reporter and source) an entity keeps at most: a client naming ever more
reporters about one session cannot grow it without bound (one forgotten counts its next
point as new, as a reporter's first does)."""


def _tie_breakers() -> Iterator[int]:
    """Tie-breakers for heap entries ``(ns, tie, entity)`` popped in bulk (ties of ``ns`` are
    many: a fleet's sessions end together): CPython's cached small ints, 0-255 in turn, so
    an entry allocates no int (32 bytes each at 1M sessions: issue 15); the rare equal
    ``(ns, tie)`` falls back to :meth:`Entity.__lt__`."""
    return itertools.cycle(range(256))


@dataclass(slots=True, eq=False)
class Details:
    """What only some entities have: seed 004's lifecycle (status, task, result, turn), the
    session's process, policy attributes and hold reasons. Kept apart from :class:`Entity`,
    whose slots every entity pays for: 80 bytes a session less (issue 15)."""

    status: str | None = None
    """Explicit status from agent lifecycle events (seed 004), as of ``status_time`` (ns)."""
    status_time: int = 0
    task: str | None = None
    result: str | None = None
    turn: str | None = None
    """An agent session's turn (:class:`~lastactive.conventions.AgentTurn`: working or
    waiting) as of ``turn_time`` (ns); ``None`` when no event said."""
    turn_time: int = 0
    pid: int | None = None
    exit_code: int | None = None
    attributes: dict[str, str] | None = None
    """Resource attributes the policy selects on (:attr:`ActivityState.attribute_keys`),
    latest value per key; ``None`` until one is seen."""
    hold_reasons: dict[str, str] | None = None
    """"kind:id" -> the latest report's ``lastactive.hold.reason`` (for display; not persisted:
    holders renew their reports)."""


class _SharedDetails(Details):
    """The empty details every entity without its own shares: read-only."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"the shared empty details are read-only: own_details() to set {name}")


_NO_DETAILS: Final[Details] = _SharedDetails.__new__(_SharedDetails)
for _f in fields(Details):
    object.__setattr__(_NO_DETAILS, _f.name, _f.default)


_UNTOLD: Final = (None, 0, None, None, None, 0, None, None)
"""A record's details from ``status`` to ``exit_code`` when none was ever reported."""


def own_details(e: Entity) -> Details:
    """``e``'s details, its own to write to."""
    details = e.details
    if details is _NO_DETAILS:
        details = e.details = Details()
    return details


@dataclass(slots=True, eq=False)
class Entity:
    """Mutable state of one session, agent or host (times in ns since the epoch)."""

    kind: Kind
    id: str
    first_seen: int
    last_seen: int
    host_id: str | None = None
    agent_id: str | None = None
    service_name: str | None = None
    source_names: tuple[str, ...] = ()
    """The sources it has a time for, sorted: one tuple shared by every entity with the same
    set (:data:`_SHARED_NAMES`)."""
    source_times: tuple[int, ...] = ()
    """The latest time (ns) of each of :attr:`source_names`, in the same order: a max-register
    per source. Two tuples rather than a dict: 64-80 bytes a session rather than 192, the
    names costing nothing (issue 15)."""
    input_bytes: int = 0
    output_bytes: int = 0
    rate_in: _RateWindow = _NO_RATE
    rate_out: _RateWindow = _NO_RATE
    holds: Mapping[str, tuple[int, int]] = field(default_factory=lambda: _NO_HOLDS)
    """"kind:id" -> (time of the latest report, until), ns; until 0 = until released. Most
    entities never have one: they share an empty read-only mapping until :func:`_own_holds`."""
    details: Details = field(default_factory=lambda: _NO_DETAILS)
    """What only some entities have; most share the empty :data:`_NO_DETAILS` until
    :func:`own_details`."""
    clock_offset: int = 0
    """The estimated clock offset (ns, positive: behind ours) of the reporter that last sent
    telemetry about it (:mod:`lastactive.collector._clocks`). Not persisted: re-estimated."""
    last_active: int | None = None
    """The latest engagement (ns, any trust; seed 002's ``last_active``), kept as its sources
    move: the "most recent first" index follows it. Derived, not persisted."""
    last_activity: int | None = None
    """The latest time (ns) among its sources of the classes that end idleness (any trust),
    kept as they move: the fleet's idle histogram follows it. Derived, not persisted."""
    tallied: bool = False
    """A session counted in the fleet aggregates (idle histogram, recent classes, producers):
    every session, or on a replica those of its shards (:attr:`ActivityState.tallies`)."""
    recent: int = 0
    """A session's bit per activity class counted as recent (:mod:`lastactive.collector.
    _ages`)."""
    recent_due: int = 0
    """The second (since the epoch) of its next recent check, 0 for none."""
    condition: Condition | None = None
    """The transition engine's (:mod:`lastactive.collector._transitions`): the condition its
    last evaluation found, ``None`` before the first. Kept here rather than in a map of the
    engine's: no tuple per evaluation, no map entry per entity (issue 15)."""
    rules: Rules | None = None
    """The engine's: the policy rules of its last evaluation."""
    counted_host: str | None = None
    """The engine's: the host it was counted under at its last evaluation."""
    deadline: int | None = None
    """The engine's: its entry in the deadline index (hibernate_at, ns), if any."""
    check_at: int | None = None
    """The engine's: when its earliest scheduled check is due (ns), if any (the timer heap
    may also hold later entries for it, which do not clear it)."""
    gauges: dict[object, float] | None = None
    """The last raw ``lastactive.source.last_time`` value (seconds, its reporter's clock) per
    reporter and source (:meth:`gauge_rose`): keyed by the source for
    :attr:`gauge_reporter`, by ``(reporter, source)`` for any other; ``None`` until one is
    reported. Kept on the entity rather than as streams in a fleet-wide map: ~270 bytes a
    session for three sources rather than ~930 (issue 15). Not persisted."""
    gauge_reporter: object = None
    """The first reporter (a :data:`~lastactive.collector._clocks.Key`) of a gauge about it."""

    def __lt__(self, other: Entity) -> bool:
        """By kind, then id, then identity: what breaks a tie of ``(ns, tie)`` in a heap and
        of ``(ns, kind, id)`` where a second of the engine's deadline index is ranked. Both
        order by cheaper values first; this call is the rare last resort."""
        if self.kind is not other.kind:
            return self.kind < other.kind
        if self.id != other.id:
            return self.id < other.id
        return id(self) < id(other)

    def source_time(self, source: str) -> int | None:
        """The latest time (ns) of ``source``, ``None`` if it never reported."""
        names = self.source_names
        return self.source_times[names.index(source)] if source in names else None

    def source_pairs(self) -> Iterator[tuple[str, int]]:
        """``(source, latest time)`` pairs, by source (ns)."""
        return zip(self.source_names, self.source_times, strict=True)

    def set_source(self, source: str, t: int) -> bool:
        """``source``'s latest time becomes ``t`` (ns) if ``t`` is later (a max-register);
        return whether it did."""
        names, times = self.source_names, self.source_times
        if source in names:
            i = names.index(source)
            if t <= times[i]:
                return False
            moved = list(times)
            moved[i] = t
            self.source_times = tuple(moved)
            return True
        i = bisect.bisect(names, source)
        self.source_names = _SHARED_NAMES((*names[:i], str(source), *names[i:]))
        self.source_times = (*times[:i], t, *times[i:])
        return True

    def gauge_rose(self, reporter: object, source: str, raw: float) -> bool:
        """Keep ``raw``, the latest ``lastactive.source.last_time`` of ``source`` (seconds by
        the clock of ``reporter``, a :data:`~lastactive.collector._clocks.Key`) about this
        entity; return whether it is above that reporter's previous one for the source, or the
        first. Raw values are compared before any clock correction: a repeated last time is no
        new activity whatever the offset estimate does meanwhile, and one clock's values are
        comparable with each other only. At most :data:`_GAUGES_MAX` are kept, the oldest
        forgotten first."""
        gauges = self.gauges
        if gauges is None:
            self.gauges = {source: raw}
            self.gauge_reporter = reporter
            return True
        key = source if reporter == self.gauge_reporter else (reporter, source)
        prev = gauges.get(key)
        if prev is not None:
            if raw <= prev:
                return False
        elif len(gauges) >= _GAUGES_MAX:
            del gauges[next(iter(gauges))]
        gauges[key] = raw
        return True

    def record(self) -> EntityRecord:
        """This entity's persisted snapshot (container fields sorted by key)."""
        # By keyword, every field (a test checks none is missing): the flush makes one per
        # changed entity on the event loop, and this is 3x faster than building the kwargs.
        d = self.details
        return EntityRecord(
            kind=str(self.kind),
            id=self.id,
            host_id=self.host_id,
            agent_id=self.agent_id,
            service_name=self.service_name,
            first_seen=self.first_seen,
            last_seen=self.last_seen,
            sources=tuple(self.source_pairs()),
            input_bytes=self.input_bytes,
            output_bytes=self.output_bytes,
            pid=d.pid,
            exit_code=d.exit_code,
            holds=tuple(sorted((key, t, until) for key, (t, until) in self.holds.items())),
            status=d.status,
            status_time=d.status_time,
            task=d.task,
            result=d.result,
            attributes=tuple(sorted(d.attributes.items())) if d.attributes else (),
            turn=d.turn,
            turn_time=d.turn_time,
        )

    def restore(self, r: EntityRecord) -> None:
        """Take every persisted field from ``r`` (rates and counter streams are not persisted)."""
        self.id, self.host_id, self.agent_id = r.id, r.host_id, r.agent_id
        self.service_name, self.first_seen, self.last_seen = (
            r.service_name,
            r.first_seen,
            r.last_seen,
        )
        if r.sources:  # sorted by source, as records are
            names, self.source_times = zip(*r.sources, strict=True)
            self.source_names = _SHARED_NAMES(names)
        else:
            self.source_names = self.source_times = ()
        self.input_bytes, self.output_bytes = r.input_bytes, r.output_bytes
        self.holds = {key: (t, until) for key, t, until in r.holds} if r.holds else _NO_HOLDS
        told = (r.status, r.status_time, r.task, r.result, r.turn, r.turn_time, r.pid, r.exit_code)
        reasons = self.details.hold_reasons  # not persisted: kept
        if told == _UNTOLD and not r.attributes and reasons is None:
            self.details = _NO_DETAILS
        else:
            attributes = dict(r.attributes) if r.attributes else None
            self.details = Details(*told, attributes, reasons)
        self.last_active = latest(r.sources, _ENGAGEMENT)[1]
        self.last_activity = latest(r.sources)[1]


class EntityView(NamedTuple):
    """What the APIs show of an entity at query time ``now`` (ns). Times are ns or ``None``.
    A named tuple: made for every entity a query, a decision or a watch snapshot answers
    about, it costs a third of a frozen dataclass's ``__init__`` (0.9 against 2.5 us:
    issue 15).

    ``last_active`` is engagement (input, prompt, user: seed 002's meaning); ``last_activity``
    and ``last_source`` are the latest activity of the classes that end idleness
    (:data:`~lastactive.conventions.IDLE_CLASSES`) and which source it was: the "why".
    ``idle_seconds`` is ``now`` minus ``last_activity`` (or ``first_seen`` if none), seconds.
    ``held_by`` lists what holds it up right now (leases, attached clients, a running foreground
    command, a tool call in flight). ``status`` is active, completed or error (seed 004): from
    agent lifecycle events, else from the process's exit code. ``turn`` is an agent session's
    turn (working, waiting, ended once the status is not active), ``None`` when no event said;
    ``turn_since`` when the turn last changed hands (ns).
    """

    kind: str
    id: str
    host_id: str | None
    agent_id: str | None
    service_name: str | None
    first_seen: int
    last_seen: int
    last_active: int | None
    last_activity: int | None
    last_source: str | None
    idle_seconds: float
    sources: dict[str, int]
    input_bytes: int
    output_bytes: int
    input_bytes_per_second: float
    output_bytes_per_second: float
    process_status: str | None
    pid: int | None
    exit_code: int | None
    status: str
    turn: str | None
    turn_since: int | None
    task: str | None
    result: str | None
    held_by: list[Hold]
    last_client_closed: int | None
    """When the last client hold was released (ns), if none is attached now."""
    attributes: dict[str, str]
    """Resource attributes that policy overrides select on (``match.attributes``)."""
    clock_offset: int
    """The estimated clock offset (ns; positive: behind ours) of the reporter that last sent
    telemetry about it."""


# Plain module constants on the view and ingest paths (see policy's: ~45 ns a member lookup
# on 3.11).
_EXIT: Final = str(Source.EXIT)
_START: Final = str(Source.START)
_EXITED: Final = ProcessStatus.EXITED
_RUNNING: Final = ProcessStatus.RUNNING
_ACTIVE_STATUS: Final = AgentStatus.ACTIVE
_SESSION: Final = Kind.SESSION
_HOST: Final = Kind.HOST
_KIND_OF: Final = {str(kind): kind for kind in Kind}
"""A record's kind as the enum: a dict lookup, a third of ``Kind(text)``'s cost."""


def _status(e: Entity, process_status: str | None) -> AgentStatus:
    d = e.details
    if d.status is not None:
        exit_t = e.source_time(_EXIT)
        if exit_t is None or d.status_time >= exit_t:
            return AgentStatus(d.status)
    if process_status == _EXITED:
        return AgentStatus.COMPLETED if not d.exit_code else AgentStatus.ERROR
    return _ACTIVE_STATUS


def _process_status(e: Entity) -> ProcessStatus | None:
    """A session's process as its start and exit times say (``None``: never started, or not
    a session: start and exit propagate up, and a host has no process)."""
    if e.kind is not _SESSION:
        return None
    start, exit_ = e.source_time(_START), e.source_time(_EXIT)
    if exit_ is not None and (start is None or exit_ >= start):
        return _EXITED
    return None if start is None else _RUNNING


def ended_at(e: Entity) -> int | None:
    """When session ``e`` ended (ns: its final status or exit, whichever is later), or
    ``None`` while it is active (never for agents and hosts)."""
    if e.kind is not _SESSION or _status(e, _process_status(e)) is _ACTIVE_STATUS:
        return None
    return max(e.details.status_time, e.source_time(_EXIT) or 0)


def view(entity: Entity, now: int, trusted_only: bool = False) -> EntityView:
    """The :class:`EntityView` of ``entity`` at ``now`` (ns since the epoch).

    With ``trusted_only``, only trusted sources (observed by lastactive or the host, seed 000's
    table) count for ``last_active``, ``last_activity`` and idleness.
    """
    sources = dict(entity.source_pairs())
    if trusted_only:
        last_active = latest(sources.items(), _ENGAGEMENT, trusted_only=True)[1]
    else:
        last_active = entity.last_active  # kept as the sources move
    last_source, last_activity = latest(sources.items(), IDLE_CLASSES, trusted_only=trusted_only)
    idle_base = idle_since(entity.first_seen, last_activity)
    held = active_holds(entity, now)
    process_status = _process_status(entity)
    status = _status(entity, process_status)
    d = entity.details
    return EntityView(  # by position: keywords cost ~1 us of its ~3 (issue 15)
        str(entity.kind),  # kind
        entity.id,
        entity.host_id,
        entity.agent_id,
        entity.service_name,
        entity.first_seen,
        entity.last_seen,
        last_active,
        last_activity,
        last_source,
        max(0.0, (now - idle_base) / NANOS),  # idle_seconds
        sources,
        entity.input_bytes,
        entity.output_bytes,
        entity.rate_in.per_second(now),  # input_bytes_per_second
        entity.rate_out.per_second(now),  # output_bytes_per_second
        process_status,
        d.pid,
        d.exit_code if process_status == _EXITED else None,  # exit_code
        str(status),  # status
        d.turn if status is _ACTIVE_STATUS else d.turn and AgentTurn.ENDED,  # turn
        d.turn_time or None,  # turn_since
        d.task,
        d.result,
        held,  # held_by
        _last_client_closed(entity, held, now),  # last_client_closed
        dict(d.attributes or {}),  # attributes
        entity.clock_offset,
    )


def _last_client_closed(entity: Entity, held: list[Hold], now: int) -> int | None:
    if not entity.holds:  # most entities
        return None
    if any(h.kind == HoldKind.CLIENT for h in held):
        return None
    closed = [
        until
        for key, (_, until) in entity.holds.items()
        if key.startswith(f"{HoldKind.CLIENT}:") and until and until <= now
    ]
    return max(closed) if closed else None


def active_holds(entity: Entity, now: int) -> list[Hold]:
    """What holds ``entity`` up at ``now``: holds not released and not expired."""
    out: list[Hold] = []
    if not entity.holds:  # most entities
        return out
    reasons = entity.details.hold_reasons or {}
    for key, (since, until) in entity.holds.items():
        if until == 0 or until > now:
            kind, _, hold_id = key.partition(":")
            out.append(Hold(kind, hold_id, until, since, reasons.get(key)))
    return out


def sort_key(v: EntityView) -> tuple[int, int, int]:
    """Most recent first: by last_active, then last_seen, then first_seen (seed 002)."""
    return (-(v.last_active or 0), -v.last_seen, -v.first_seen)


PageKey = tuple[int, int, int, str]
""":func:`sort_key` and the id: a total order of sessions, for pages."""


def page_key(v: EntityView) -> PageKey:
    """``v``'s place in the "most recent first" order (ties broken by id)."""
    return (-(v.last_active or 0), -v.last_seen, -v.first_seen, v.id)


def _page_key(e: Entity, trusted_only: bool) -> PageKey:
    """:func:`page_key` of ``e``'s view, without making the view."""
    if trusted_only:
        last_active = latest(e.source_pairs(), _ENGAGEMENT, trusted_only=True)[1]
    else:
        last_active = e.last_active
    return (-(last_active or 0), -e.last_seen, -e.first_seen, e.id)


def stream_text(key: tuple[object, ...]) -> str:
    """A counter stream's key as stores keep it (:class:`StreamRecord`): 32 hex characters, a
    128-bit BLAKE2b digest of the key's ``repr``. The same on every replica and across
    restarts, and short however long the key (a ``repr`` kept per stream cost ~270 bytes:
    issue 15)."""
    return hashlib.blake2b(repr(key).encode(errors="backslashreplace"), digest_size=16).hexdigest()


class _Stream:
    __slots__ = ("key", "start", "text", "time", "value")

    def __init__(self, key: tuple[object, ...], start: int, time: int, value: float) -> None:
        self.key = key
        """Its key in :attr:`ActivityState._streams` (so a changed stream is kept by itself,
        not by its key, which would be hashed again at each point)."""
        self.start, self.time, self.value = start, time, value
        self.text = ""
        """The key as text (:func:`stream_text`), kept only by a replica that adds up rises
        (:meth:`ActivityState.rise_point`, at each point); a flush makes it afresh (~1.5 us a
        changed stream, where keeping it cost 81 bytes a stream: issue 15)."""


class _Rise:
    """A cumulative byte stream's points since the last commit (:class:`StreamRise`)."""

    __slots__ = ("receive", "runs", "targets")

    def __init__(self, targets: tuple[tuple[str, str], ...], receive: bool) -> None:
        self.targets, self.receive = targets, receive
        self.runs: list[tuple[int, int, float, int]] = []
        """``(start, time, value, counted)`` per run, oldest first."""

    def add(self, start: int, time: int, value: float, counted: int) -> None:
        """The stream's point at ``time`` and the bytes counted from it; a new run when the
        stream reset (another ``start`` or a lower value)."""
        runs = self.runs
        if runs:
            last = runs[-1]
            if last[0] == start and value >= last[2]:
                runs[-1] = (start, time, value, last[3] + counted)
                return
        runs.append((start, time, value, counted))


class ActivityState:
    """All entities, their counter streams, and the set changed since the last flush.

    Args:
        max_skew_ns: how far in the future (ns) a timestamp may be before it is clamped to the
            receive time.
        started_at: ns; a counter stream first seen here counts its whole value only if it
            started after this (else its earlier history is unknown and it is a baseline).
        max_entities: how many entities are tracked at most (:class:`EntityLimitError`
            beyond).
    """

    def __init__(
        self, *, max_skew_ns: int = 10 * NANOS, started_at: int = 0, max_entities: int = 2**62
    ) -> None:
        self.max_skew_ns = max_skew_ns
        self.started_at = started_at
        self.max_entities = max_entities
        self.refused = 0
        """Entities not created because of ``max_entities`` (for ``/metrics``)."""
        self.entities: dict[Kind, SplitMap[str, Entity]] = {kind: SplitMap() for kind in Kind}
        """Every entity, by kind, then id: a map per kind, so an entity's key is its id
        alone, not a ``(kind, id)`` tuple (64 bytes each at 1M sessions: issue 15), split so
        that growing it never stalls the event loop (:mod:`~lastactive.collector._split_map`)."""
        self._streams: Generations[tuple[object, ...], _Stream] = Generations()
        """Counter and gauge streams; one silent for a retention period is dropped within two
        (:meth:`purge`)."""
        self._stored_streams: dict[str, StreamRecord] = {}
        """Counter baselines loaded from the store, by text key, until their stream's first
        point after the restart claims them."""
        self._rotate_at: int | None = None
        self._ended: list[tuple[int, int, Entity]] = []
        """Heap of (ended at, tie, session): the retention purge's candidates, oldest first;
        an entry whose session is active again (or ended again later) is stale. Popped in
        bulk, so ties are broken by an int (:func:`_tie_breakers`)."""
        self._ended_ties = _tie_breakers()
        self._dirty_streams: set[_Stream] = set()
        self._retry_streams: list[StreamRecord] = []
        self._dirty: set[Entity] = set()
        self._touched: set[Entity] = set()
        self.removals = 0
        """Entities forgotten since start (purged or evicted): what holds entities across
        turns of the event loop (an export applied in slices) checks it before using them."""
        self._on_host: dict[str, dict[Entity, None]] = {}
        """host id -> its sessions (filtered lists and watches cost the host, not the fleet)."""
        self._idle = IdleHistogram()
        self._recency = RecencyIndex()
        self._recent = RecentClasses(_release_lapsed)
        self.producing: dict[Entity, None] = {}
        """Sessions that sent output lately (a superset: those whose rate window lapsed
        leave when :meth:`producers` reaches them)."""
        self.updates: dict[str, int] = {}
        """Source -> activity updates applied (a last time moved forward): seed 001's
        ``vnc_activity_updates_total``, for every source. Read by metrics."""
        self.attribute_keys: frozenset[str] = frozenset()
        """Resource attribute keys kept per entity (set from the policy's
        ``match.attributes``; none by default, so ingest pays nothing for them)."""
        self.additive_io = False
        """Replicas on a shared store (:mod:`lastactive.collector._replica`): byte totals are
        the store's, to which each replica adds what it counted (:meth:`take_io_counted`);
        loaded records bring their totals as they are."""
        self._io_counted: dict[Entity, list[int]] = {}
        """Bytes counted per entity since the last commit (with :attr:`additive_io`): input
        and output from delta streams (the store adds them), then input and output from
        cumulative ones (the store counts those from :attr:`_rises`)."""
        self._rises: dict[str, _Rise] = {}
        """Cumulative byte streams' points since the last commit, by stream key text."""
        self._followed: dict[Entity, tuple[int, int]] = {}
        """(input, output) byte totals of the stored row last followed (with
        :attr:`additive_io`): their rises feed the rate windows (:meth:`load`)."""
        self.tallies: Callable[[Entity], bool] | None = None
        """Which sessions the fleet aggregates count (:attr:`Entity.tallied`): ``None``, every
        one; a replica on a shared store counts those of its shards, so the replicas'
        ``/metrics`` sum to the fleet's (issue 13). Asked when a session is made or loaded and
        at :meth:`retally`."""
        self.touching: frozenset[str] = frozenset(SOURCES) - {Source.TELEMETRY}
        """Sources whose activity marks an entity touched (set by the transition engine to the
        sources its policy counts, so liveness alone costs no re-evaluation)."""

    # --- identity ---------------------------------------------------------------------

    def resolve(self, ident: Identity, t: int) -> list[Entity]:
        """The entities ``ident`` is about (session, agent, host), created as needed at ``t``.

        Raises:
            EntityLimitError: one would be new beyond ``max_entities``.
        """
        session_id, agent_id, host_id, service_name = ident
        out: list[Entity] = []
        host = None
        if host_id:
            host = self._entity(_HOST, host_id, None, None, service_name, t)
            # Its sessions and agents keep the host's own id string, not one of their own.
            host_id = host.id
        if session_id:
            out.append(self._entity(_SESSION, session_id, host_id, agent_id, service_name, t))
        if agent_id:
            out.append(self._entity(Kind.AGENT, agent_id, host_id, agent_id, service_name, t))
        if host is not None:
            out.append(host)
        return out

    def _entity(
        self,
        kind: Kind,
        key: str,
        host_id: str | None,
        agent_id: str | None,
        service_name: str | None,
        t: int,
    ) -> Entity:
        """The entity ``kind``/``key``, made at ``t`` if new, on ``host_id`` and of
        ``agent_id`` (a session's) and ``service_name`` when they say (``None``: not said)."""
        of_kind = self.entities[kind]
        e = of_kind.get(key)
        if e is None:
            if self.count() >= self.max_entities:
                self.refused += 1
                raise EntityLimitError(
                    f"the collector tracks its maximum of {self.max_entities} sessions, agents "
                    f"and hosts; {kind} {key!r} is not tracked until ended ones are purged "
                    f"(LASTACTIVE_MAX_ENTITIES)"
                )
            e = Entity(kind, key, first_seen=t, last_seen=t)
            of_kind[key] = e
            if kind is _SESSION:
                self._recency.add(e)
                if self.tallies is None or self.tallies(e):
                    e.tallied = True
                    self._idle.add(t)
            self._dirty.add(e)
            self._touched.add(e)
        # A new host or agent may select other policy rules and moves the session in the
        # transition engine's indexes: touched, so the next tick re-evaluates it.
        if host_id and e.host_id != host_id:
            if kind is _SESSION:
                self._move_host(e, e.host_id, host_id)
            e.host_id = host_id
            self._dirty.add(e)
            self._touched.add(e)
        if agent_id and kind is _SESSION and e.agent_id != agent_id:
            e.agent_id = agent_id
            self._dirty.add(e)
            self._touched.add(e)
        if service_name and e.service_name is None:
            e.service_name = sys.intern(service_name)  # a fleet has a few
            self._dirty.add(e)
        return e

    def _move_host(self, e: Entity, was: str | None, host_id: str | None) -> None:
        """Session ``e`` moves from host ``was`` to ``host_id`` in the host index (``None``:
        on none, or forgotten)."""
        old = None if was is None else self._on_host.get(was)
        if old is not None and was is not None:
            old.pop(e, None)
            if not old:
                del self._on_host[was]
        if host_id is not None:
            self._on_host.setdefault(host_id, {})[e] = None

    def on_host(self, host_id: str) -> list[Entity]:
        """The sessions on ``host_id`` (the host index)."""
        return list(self._on_host.get(host_id, ()))

    def describe(self, entities: list[Entity], attributes: tuple[tuple[str, str], ...]) -> None:
        """Keep ``attributes`` (resource attributes among :attr:`attribute_keys`, as
        ``(key, value)`` pairs) on ``entities``; a change re-selects their policy rules."""
        for e in entities:
            kept = e.details.attributes
            if kept is None:
                kept = own_details(e).attributes = {}
            changed = False
            for key, value in attributes:
                if kept.get(key) != value:
                    kept[key] = value
                    changed = True
            if changed:
                self._dirty.add(e)
                self._touched.add(e)

    # --- observations (all times ns; ``now`` is the receive time) ----------------------

    def clamp(self, t: int, now: int) -> int:
        """``t``, or ``now`` when ``t`` is unset (0) or beyond the allowed clock skew."""
        if t <= 0 or t > now + self.max_skew_ns:
            return now
        return t

    def seen(self, entities: list[Entity], t: int) -> None:
        """Any telemetry at ``t``: liveness (``last_seen``) and the ``first_seen`` min."""
        for e in entities:
            if t > e.last_seen:
                self._later(e, t)
            if t < e.first_seen:
                self._earlier(e, t)

    def _later(self, e: Entity, t: int) -> None:
        """``e`` was seen at ``t``, after its ``last_seen``."""
        if e.last_active is None and e.kind is _SESSION:
            self._recency.seen(e, t)  # ranked by last_seen until engaged
        e.last_seen = t
        self._dirty.add(e)

    def _earlier(self, e: Entity, t: int) -> None:
        """``e`` was seen at ``t``, before its ``first_seen``."""
        if e.last_activity is None and e.tallied:
            self._idle.move(e.first_seen, t)
        e.first_seen = t
        self._dirty.add(e)

    def activity(self, entities: list[Entity], source: str, t: int) -> None:
        """``source`` was active at ``t`` (a max-register per source); also liveness."""
        # One pass, each entity seen then moved (:meth:`seen`'s work inline): the per-point
        # path of every export (issue 15).
        moved = False
        counted, bit = source in _COUNTED, _SOURCE_BITS.get(source, 0)
        engaging, touching = source in _ENGAGING, source in self.touching
        dirty = self._dirty
        for e in entities:
            if t > e.last_seen:
                self._later(e, t)
            if t < e.first_seen:
                self._earlier(e, t)
            if not e.set_source(source, t):
                continue
            moved = True
            dirty.add(e)
            if touching:
                self._touched.add(e)
            last = e.last_activity
            if counted and (last is None or t > last):
                if e.tallied:
                    self._idle.move(e.first_seen if last is None else last, t)
                e.last_activity = t
            if bit and not e.recent & bit and e.tallied:
                self._recent.saw(e, bit, t)
            if engaging and (e.last_active is None or t > e.last_active):
                if e.kind is _SESSION:
                    self._recency.engaged(e, t)
                e.last_active = t
            if source == _EXIT:
                self._may_end(e)
        if moved:
            self.updates[source] = self.updates.get(source, 0) + 1

    def process(self, entities: list[Entity], pid: int | None, exit_code: int | None) -> None:
        """Process facts from start and exit events (the status derives from their times)."""
        for e in entities:
            if e.kind is Kind.SESSION:
                if pid is not None:
                    own_details(e).pid = pid
                if exit_code is not None:
                    own_details(e).exit_code = exit_code
                self._dirty.add(e)

    def last_time(
        self,
        entities: list[Entity],
        reporter: object,
        raw: float,
        source: str,
        t: int,
        off: int,
        now: int,
    ) -> None:
        """One ``lastactive.source.last_time`` point about ``entities`` (the most specific
        first, which keeps the gauge: :meth:`Entity.gauge_rose`) from ``reporter`` (a
        :data:`~lastactive.collector._clocks.Key`) received at ``t`` (ns, corrected):
        liveness; and ``source`` active at ``raw`` (seconds since the epoch by the reporter's
        clock, whose offset is ``off`` ns; clamped as :meth:`clamp` against ``now``) when
        ``raw`` is above that reporter's previous value for the source, or the first."""
        self.seen(entities, t)
        if not entities[0].gauge_rose(reporter, source, raw):
            return
        at = int(raw * NANOS)
        self.activity(entities, source, self.clamp(at + off if at > 0 else 0, now))

    def counter(
        self,
        key: tuple[object, ...],
        start: int,
        t: int,
        value: float,
        cumulative: bool,
        began: int | None = None,
    ) -> tuple[float, int] | None:
        """Feed one Sum data point of stream ``key``: how much it rose and the time of the
        stream's previous point (0 for none: a new stream, or a delta point), or ``None``.

        ``start`` and ``t`` are the point's own (ns, the reporter's clock: they identify the
        stream's run and order its points); ``began`` is ``start`` on our clock (corrected for
        the reporter's offset; default ``start``), compared with :attr:`started_at`.
        ``None`` means the point is stale (not newer than the stream's last point) and must
        be ignored; a rise of 0 means it arrived but nothing happened (arrival is not
        activity).
        """
        if not cumulative:
            return (value if value > 0 else 0.0), 0
        streams = self._streams
        prev = streams.current.get(key) or streams.revive(key)
        if prev is None and self._stored_streams:  # the first point since a restart
            stored = self._stored_streams.pop(stream_text(key), None)
            if stored is not None:
                prev = streams.current[key] = _Stream(key, stored.start, stored.time, stored.value)
        if prev is None:
            prev = streams.current[key] = _Stream(key, start, t, value)
            self._dirty_streams.add(prev)
            # Unknown history: count it all only if the stream began while we were watching.
            began = start if began is None else began
            return (value if began >= self.started_at and start > 0 else 0.0), 0
        self._dirty_streams.add(prev)
        previous = prev.time
        if t <= previous:
            return None
        rose: float
        if start != prev.start or value < prev.value:  # reset
            rose = value
        else:
            rose = value - prev.value
        prev.start, prev.time, prev.value = start, t, value
        return rose, previous

    def hold(
        self,
        entities: list[Entity],
        kind: HoldKind | str,
        hold_id: str,
        until: int,
        t: int,
        reason: str | None = None,
    ) -> None:
        """A hold reported at ``t`` (ns) stands until ``until`` (ns; 0 = until released; not
        after ``t`` = released), ``reason`` saying what the holder does. The latest report of
        a hold wins, whatever the arrival order."""
        key = f"{kind}:{hold_id}"
        for e in entities:
            prev = e.holds.get(key)
            if prev is None or t >= prev[0]:
                # Forget holds that ended long before this report: the dict stays small (the
                # same rule as the stores', collector._record.prune_holds).
                horizon = t - HOLD_GRACE_NS
                holds = _own_holds(e)
                for old in [k for k, (_, u) in holds.items() if 0 < u < horizon]:
                    del holds[old]
                holds[key] = (t, until)
                if reason is not None or e.details.hold_reasons:
                    d = own_details(e)
                    reasons = d.hold_reasons = d.hold_reasons or {}
                    if reason is None:
                        reasons.pop(key, None)
                    else:
                        reasons[key] = reason
                    for old in [k for k in reasons if k not in e.holds]:
                        del reasons[old]
                self._dirty.add(e)
                self._touched.add(e)

    def release_holds(self, entities: list[Entity], t: int, kind: HoldKind | None = None) -> None:
        """The session ended at ``t`` (or, with ``kind``, that kind of hold ended): every hold
        (of ``kind``) it reported before then is released, on the session and its agent and
        host."""
        session = next((e for e in entities if e.kind is Kind.SESSION), None)
        if session is None:
            return
        prefix = "" if kind is None else f"{kind}:"
        keys = [
            k
            for k, (reported, until) in session.holds.items()
            if reported <= t and k.startswith(prefix) and (until == 0 or until > t)
        ]
        for e in entities:
            for key in keys:
                prev = e.holds.get(key)
                if prev is not None and prev[0] <= t:
                    _own_holds(e)[key] = (t, t)
                    self._dirty.add(e)
                    self._touched.add(e)

    def turn(self, entities: list[Entity], turn: AgentTurn, t: int) -> None:
        """The agent session's turn is ``turn`` as of ``t`` (the latest event wins). Turning
        to ``waiting`` releases the tool calls reported before ``t`` (none is in flight while
        the agent waits for the user)."""
        for e in entities:
            if e.kind is Kind.SESSION and t >= e.details.turn_time:
                d = own_details(e)
                if d.turn != turn:
                    self._touched.add(e)
                d.turn, d.turn_time = str(turn), t
                self._dirty.add(e)
        if turn is AgentTurn.WAITING:
            self.release_holds(entities, t, HoldKind.TOOL)

    def agent_event(
        self,
        entities: list[Entity],
        status: AgentStatus,
        source: Source,
        t: int,
        task: str | None = None,
        result: str | None = None,
        turn: AgentTurn = AgentTurn.WORKING,
    ) -> None:
        """One agent lifecycle event (seed 004): ``status`` as of ``t`` on the session (the
        latest event wins), ``task``/``result`` when given, ``source`` as activity, and, while
        the status is active, ``turn``."""
        self.activity(entities, source, t)
        if status is AgentStatus.ACTIVE:
            self.turn(entities, turn, t)
        for e in entities:
            if e.kind is Kind.SESSION and t >= e.details.status_time:
                d = own_details(e)
                d.status, d.status_time = str(status), t
                if task:
                    d.task = task
                if result is not None:
                    d.result = result
                self._dirty.add(e)
                self._touched.add(e)
                self._may_end(e)
        if status is not AgentStatus.ACTIVE:
            self.release_holds(entities, t)

    def _may_end(self, e: Entity) -> None:
        """``e`` may have ended: if it did, it becomes a retention candidate."""
        ended = ended_at(e)
        if ended is not None:
            heapq.heappush(self._ended, (ended, next(self._ended_ties), e))

    def purge(self, now: int, retention_ns: int) -> tuple[list[Entity], bool]:
        """Forget sessions completed or failed more than ``retention_ns`` before ``now`` (never
        an active one; seed 004's 24 h cleanup), and counter streams silent that long.

        Costs what expires, not the fleet: ended sessions wait in a heap by end time; counter
        streams live in two generations, rotated every ``retention_ns``, so a stream silent
        for a retention period is dropped within two (the dropped generation is handed to
        :meth:`release`).

        Returns:
            The sessions removed (for the store to delete their rows, the transition engine to
            forget them), and whether the streams rotated (the store may then drop baselines
            older than ``now - retention_ns``).
        """
        horizon = now - retention_ns
        gone = []
        heap, sessions = self._ended, self.entities[Kind.SESSION]
        while heap and heap[0][0] <= horizon:
            _, _, e = heapq.heappop(heap)
            ended = ended_at(e)
            if ended is None or ended > horizon or sessions.get(e.id) is not e:
                continue  # active again, ended again later, or already gone
            self._remove(e)
            gone.append(e)
        if self._rotate_at is None:
            self._rotate_at = now + retention_ns
        rotated = now >= self._rotate_at
        if rotated:
            self._rotate_at = now + retention_ns
            streams = self._streams
            streams.rotate()
            streams.retire(self._stored_streams)  # baselines unclaimed for a whole period
            self._stored_streams = {}
            old = streams.old
            self._dirty_streams = {st for st in self._dirty_streams if st.key in old}
        return gone, rotated

    def evict(self, e: Entity, now: int) -> bool:
        """Forget ``e`` from memory unless something of it is not committed yet (changed,
        bytes counted, or not yet seen by the transition engine) or a hold still stands on it
        (a session's end releases its holds from what memory holds of them); ``True`` when it
        is gone. For a replica on a shared store, which keeps what it does not own only while
        it is in use (the store has the rest; a later report makes it anew and the store
        merges)."""
        if not self.tracked(e):
            return True
        if e in self._dirty or e in self._touched or e in self._io_counted:
            return False
        if any(until == 0 or until > now for _, until in e.holds.values()):
            return False
        self._remove(e)
        return True

    def _remove(self, e: Entity) -> None:
        """Forget ``e`` (in memory) and every index it is in."""
        del self.entities[e.kind][e.id]
        self.removals += 1
        if e.kind is Kind.SESSION:
            self._move_host(e, e.host_id, None)
            self._untally(e)
            self._recency.remove(e)
        self._dirty.discard(e)
        self._touched.discard(e)
        self._io_counted.pop(e, None)
        self._followed.pop(e, None)
        self.producing.pop(e, None)

    def retally(self, entities: Iterable[Entity], now: int) -> None:
        """Ask :attr:`tallies` again about ``entities`` (a replica's shards moved) and count
        them in the fleet aggregates, or not, accordingly (``now``: ns)."""
        horizon = (now // NANOS - RECENT_S) * NANOS
        for e in entities:
            if e.kind is Kind.SESSION:
                if e.tallied:
                    self._idle.add(idle_since(e.first_seen, e.last_activity), -1)
                self._tally(e, horizon)

    def _tally(self, e: Entity, horizon: int) -> None:
        """Count session ``e``, whose idle base is not counted, in the fleet aggregates if
        :attr:`tallies` says so (with its classes active since ``horizon``, ns), else forget
        it from them."""
        if self.tallies is not None and not self.tallies(e):
            self._untally(e, idle=False)
            return
        e.tallied = True
        self._idle.add(idle_since(e.first_seen, e.last_activity))
        if not e.source_times or max(e.source_times) < horizon:
            return  # nothing recent (most of a large fleet's sessions)
        for cls, t in latest_by_class(e.source_pairs()).items():
            bit = CLASS_BITS[cls]
            if t >= horizon and not e.recent & bit:
                self._recent.saw(e, bit, t)

    def _untally(self, e: Entity, *, idle: bool = True) -> None:
        """Stop counting ``e`` in the fleet aggregates (its idle base too, with ``idle``)."""
        if e.tallied:
            e.tallied = False
            if idle:
                self._idle.add(idle_since(e.first_seen, e.last_activity), -1)
            self._recent.forget(e)

    def release(self, budget: int) -> bool:
        """Free up to ``budget`` dropped counter streams; ``True`` while more remain (the
        caller yields to the event loop between slices)."""
        return self._streams.release(budget)

    def io(
        self, entities: list[Entity], receive: bool, delta: int, t: int, cumulative: bool = False
    ) -> None:
        """``delta`` bytes moved at ``t``, into (``receive``) or out of the session; counted
        from a ``cumulative`` stream's rise (on a shared store, :meth:`rise_point` then tells
        the store the stream's points, from which it counts them itself) or a delta point."""
        slot = 2 * cumulative + (not receive)
        additive = self.additive_io
        dirty, touched = self._dirty, self._touched
        for e in entities:
            # Totals saturate at INT64_MAX (what a store holds) rather than overflow it.
            if receive:
                total = e.input_bytes + delta
                e.input_bytes = total if total < INT64_MAX else INT64_MAX
            else:
                total = e.output_bytes + delta
                e.output_bytes = total if total < INT64_MAX else INT64_MAX
            if additive:  # rates follow the store's totals (load), whoever received them
                counted = self._io_counted.get(e)
                if counted is None:
                    counted = self._io_counted[e] = [0, 0, 0, 0]
                counted[slot] += delta
            else:
                self._rate(e, receive, t, delta)
            dirty.add(e)
            touched.add(e)

    def _rate(self, e: Entity, receive: bool, t: int, delta: int) -> None:
        """``delta`` bytes into (``receive``) or out of ``e`` at ``t`` (ns) in its rate window."""
        window = e.rate_in if receive else e.rate_out
        if type(window) is not _RateWindow:  # none yet (:data:`_NO_RATE`), or published
            # A published rate is replaced by this replica's own window once it measures one.
            window = _RateWindow()
            if receive:
                e.rate_in = window
            else:
                e.rate_out = window
        window.add(t, delta)
        if not receive and e.kind is _SESSION:
            self.producing[e] = None

    def rise_point(
        self, key: tuple[object, ...], entities: list[Entity], receive: bool, rose: int
    ) -> None:
        """With :attr:`additive_io`: the point of the cumulative byte stream ``key`` just fed
        to :meth:`counter` (not stale), from which this replica counted ``rose`` bytes into
        ``entities``. Kept for the store, which counts the stream's points against the last
        one any replica stored (issue 13: a stream moving between replicas counts each byte
        once)."""
        head = self._streams.current[key]
        if not head.text:
            head.text = stream_text(key)
        rise = self._rises.get(head.text)
        if rise is None:
            targets = tuple((str(e.kind), e.id) for e in entities)
            rise = self._rises[head.text] = _Rise(targets, receive)
        rise.add(head.start, head.time, head.value, rose)

    def take_io_counted(self) -> Counted:
        """What was counted since the last call (with :attr:`additive_io`), for the store to
        add to its totals."""
        counted, self._io_counted = self._io_counted, {}
        rises, self._rises = self._rises, {}
        return Counted(
            [(str(e.kind), e.id, c[0], c[1]) for e, c in counted.items() if c[0] or c[1]],
            [StreamRise(key, r.receive, r.targets, tuple(r.runs)) for key, r in rises.items()],
        )

    def restore_io_counted(self, counted: Counted) -> None:
        """Put back what :meth:`take_io_counted` gave when the store did not take it (before
        what was counted since)."""
        for kind, key, i, o in counted.bytes:
            e = self.entities[Kind(kind)].get(key)
            if e is not None:
                mine = self._io_counted.setdefault(e, [0, 0, 0, 0])
                mine[0] += i
                mine[1] += o
        for stream in counted.streams:
            later = self._rises.get(stream.key)
            rise = self._rises[stream.key] = _Rise(stream.targets, stream.receive)
            for run in (*stream.runs, *(later.runs if later is not None else ())):
                rise.add(*run)
            for kind, key in stream.targets:
                e = self.entities[Kind(kind)].get(key)
                if e is not None:
                    mine = self._io_counted.setdefault(e, [0, 0, 0, 0])
                    mine[2 + (not stream.receive)] += sum(run[3] for run in stream.runs)

    # --- queries -------------------------------------------------------------------------

    def idle_histogram(self, now: int) -> tuple[list[int], int]:
        """Sessions (those tallied: :attr:`tallies`) by whole seconds idle at ``now`` (ns):
        counts per
        :data:`~lastactive.collector._ages.IDLE_BUCKETS` bound and +Inf (not cumulative), and
        the sum of idle seconds (:class:`~lastactive.collector._ages.IdleHistogram`)."""
        return self._idle.histogram(now)

    def recent(self, now: int) -> dict[ActivityClass, int]:
        """Sessions (those tallied) with activity of each class in the last
        :data:`~lastactive.collector._ages.RECENT_S` seconds at ``now`` (ns)
        (:class:`~lastactive.collector._ages.RecentClasses`)."""
        return self._recent.counts(now)

    def age_recent(self, now: int, budget: int | None = None) -> bool:
        """Run up to ``budget`` of the recent-activity checks due at ``now`` (ns; ``None``:
        all); return whether due ones are left (:meth:`~lastactive.collector._ages.
        RecentClasses.advance`)."""
        return self._recent.advance(now, budget)

    def producers(
        self, now: int, among: Iterable[Entity] | None = None
    ) -> list[tuple[float, Entity]]:
        """The sessions (those tallied) with output in their rate window at ``now`` (ns), each
        with its rate in bytes per second: of ``among`` (a slice of a copy of
        :attr:`producing`, so a caller can let the event loop turn between slices), or of all
        of :attr:`producing`. Costs the sessions that produced lately, not the fleet; those
        whose window lapsed (or that are no longer tracked or tallied) leave
        :attr:`producing` on the way."""
        sessions, producing, out = self.entities[Kind.SESSION], self.producing, []
        for e in list(producing) if among is None else among:
            if e.tallied and sessions.get(e.id) is e:
                window = e.rate_out
                rate = window.per_second(now)
                if rate > 0:
                    out.append((rate, e))
                    continue
                if not window.lapsed(now):  # output after ``now`` (a slice read late)
                    continue
            producing.pop(e, None)
        return out

    def count(self) -> int:
        """How many entities are tracked (every kind)."""
        return sum(map(len, self.entities.values()))

    def all_entities(self) -> Iterator[Entity]:
        """Every tracked entity, kind by kind in :class:`Kind` order (hosts, agents, sessions);
        do not change the state while iterating."""
        return itertools.chain.from_iterable(of_kind.values() for of_kind in self.entities.values())

    def tracked(self, e: Entity) -> bool:
        """Is ``e`` the entity tracked for its kind and id (not purged, evicted or replaced)?"""
        return self.entities[e.kind].get(e.id) is e

    def host_of(self, kind: Kind, key: str) -> str | None:
        """The host id an entity runs on; ``None`` when unknown or not said."""
        e = self.entities[kind].get(key)
        return None if e is None else e.host_id

    def get(self, kind: Kind, key: str, now: int, trusted_only: bool = False) -> EntityView | None:
        """The view of one entity at ``now`` (ns), or ``None`` if unknown."""
        e = self.entities[kind].get(key)
        return None if e is None else view(e, now, trusted_only)

    def views(
        self, now: int, kinds: tuple[Kind, ...] = (Kind.SESSION, Kind.HOST)
    ) -> list[EntityView]:
        """Views of every entity of ``kinds`` at ``now`` (ns), unordered."""
        return [view(e, now) for kind in kinds for e in self.entities[kind].values()]

    def sessions(
        self,
        now: int,
        host_id: str | None = None,
        limit: int = 0,
        trusted_only: bool = False,
        after: PageKey | None = None,
    ) -> list[EntityView]:
        """:meth:`sessions_sliced` at once."""
        return whole(self.sessions_sliced(now, host_id, limit, trusted_only, after))

    def sessions_sliced(
        self,
        now: int,
        host_id: str | None = None,
        limit: int = 0,
        trusted_only: bool = False,
        after: PageKey | None = None,
    ) -> Sliced[list[EntityView]]:
        """Session views at ``now`` (ns), optionally on one host, most recent first
        (:func:`page_key`), only those after ``after`` when given; at most ``limit`` of them
        (0: all). With a limit and no host, the recency index finds them at the cost of what
        is returned (:mod:`lastactive.collector._recency`; with ``trusted_only``, also of the
        sessions whose engagement is untrusted and later); on one host, a partial sort of the
        host's sessions. Only the returned sessions get a view, :data:`VIEWS_SLICE` a slice
        (issue 15: a page of 10,000 made its views in one piece, ~55 ms)."""
        if host_id is None and limit > 0:
            found = self._recency.first(
                limit,
                lambda e: _page_key(e, trusted_only),
                after,
                exact_buckets=not trusted_only,
            )
        else:
            chosen_from = (
                self.entities[Kind.SESSION].values()
                if host_id is None
                else self._on_host.get(host_id, ())
            )
            keyed = ((_page_key(e, trusted_only), e) for e in chosen_from)
            if after is not None:
                keyed = (pair for pair in keyed if pair[0] > after)
            first = itemgetter(0)
            chosen = (
                heapq.nsmallest(limit, keyed, key=first) if limit > 0 else sorted(keyed, key=first)
            )
            found = [e for _, e in chosen]
        return (yield from mapped(lambda e: view(e, now, trusted_only), found, VIEWS_SLICE))

    # --- persistence ---------------------------------------------------------------------

    def touched(self) -> set[Entity]:
        """The entities touched since the last :meth:`take_touched` (not drained; do not
        change it)."""
        return self._touched

    def take_touched(self) -> set[Entity]:
        """Entities whose activity, holds, status or bytes changed since the last call (for the
        transition engine, which re-evaluates them)."""
        touched, self._touched = self._touched, set()
        return touched

    def take_dirty(self) -> list[EntityRecord]:
        """Snapshots of the entities changed since the last call, which are now clean."""
        return [e.record() for e in self.take_changed()]

    def take_changed(self) -> set[Entity]:
        """The entities changed since the last call (or :meth:`take_dirty`), now clean: the
        caller snapshots them (``Entity.record``), a slice at a time if it likes; one changed
        again meanwhile is simply changed again."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def take_dirty_streams(self) -> list[StreamRecord]:
        """The counter baselines changed since the last call (and those whose write failed)."""
        dirty, self._dirty_streams = self._dirty_streams, set()
        out, self._retry_streams = self._retry_streams, []
        for st in dirty:
            out.append(StreamRecord(st.text or stream_text(st.key), st.start, st.time, st.value))
        return out

    def mark_dirty(
        self, records: Iterable[EntityRecord], streams: Iterable[StreamRecord] = ()
    ) -> None:
        """Put back records (and baselines) whose write failed, so the next flush writes them
        again."""
        for r in records:
            e = self.entities[Kind(r.kind)].get(r.id)
            if e is not None:
                self._dirty.add(e)
        self._retry_streams.extend(streams)

    def unfollow(self, entities: Iterable[Entity]) -> None:
        """Forget the rows last followed for ``entities`` (their shard went to another
        replica: when it comes back, its first row sets a new base, not a rise)."""
        for e in entities:
            self._followed.pop(e, None)

    def _follow_rates(self, e: Entity, r: EntityRecord, now: int) -> None:
        """What ``r``'s byte totals rose by since the row was last followed, into ``e``'s rate
        windows at the row's ``last_seen`` (no later than ``now``, ns): the bytes moved by
        then, however late this replica reads the row. Counted at ``now``, a row read after a
        stall would make a rate of bytes that stopped long ago (and a runaway that never
        ends while nothing else moves)."""
        before = self._followed.get(e)
        self._followed[e] = (r.input_bytes, r.output_bytes)
        if before is not None:
            at = min(r.last_seen, now)
            for receive, rose in (
                (True, r.input_bytes - before[0]),
                (False, r.output_bytes - before[1]),
            ):
                if rose > 0:
                    self._rate(e, receive, at, rose)

    def load_streams(self, streams: Iterable[StreamRecord]) -> None:
        """Counter baselines saved before a restart: each stream's next point counts from
        its baseline (not from zero, not as a new stream)."""
        for r in streams:
            prev = self._stored_streams.get(r.key)
            if prev is None or r.time >= prev.time:
                self._stored_streams[r.key] = r

    def load(
        self, records: Iterable[EntityRecord], now: int | None = None, *, follow: bool = False
    ) -> list[Entity]:
        """Merge persisted records in, by :func:`~lastactive.collector._record.merge` (so
        loading twice is harmless); return the entities they made or changed. ``now`` (ns),
        when given, spares the recent-activity checks of sessions with nothing recent.

        With :attr:`additive_io` and ``follow`` (a replica's change feed of the shards it
        evaluates, read every tick), what the byte totals rose by since the row was last
        followed goes into the rate windows at the row's ``last_seen`` (at most ``now``): the
        bytes any replica received, so the owner's runaway verdict is the fleet's (issue 13).

        An entity that already existed (telemetry about it arrived while the state was still
        loading, or a second load) is marked touched: the transition engine re-evaluates it."""
        horizon = -1 if now is None else (now // NANOS - RECENT_S) * NANOS
        out = []
        session = _SESSION
        for r in records:
            kind = _KIND_OF[r.kind]
            of_kind = self.entities[kind]
            e = of_kind.get(r.id)
            before = None if e is None else e.host_id
            if e is None:
                e = of_kind[r.id] = Entity(kind, r.id, r.first_seen, r.last_seen)
                e.restore(r)
            else:
                self._touched.add(e)
                if kind is session:
                    if e.tallied:
                        self._idle.add(idle_since(e.first_seen, e.last_activity), -1)
                    self._recency.remove(e)
                e.restore(merge(e.record(), r))
            if self.additive_io:  # the store's totals, plus what is not added to them yet
                if follow and now is not None:
                    self._follow_rates(e, r, now)
                counted = self._io_counted.get(e)
                e.input_bytes, e.output_bytes = r.input_bytes, r.output_bytes
                if counted is not None:
                    e.input_bytes += counted[0] + counted[2]
                    e.output_bytes += counted[1] + counted[3]
            if kind is session:
                self._tally(e, horizon)
                self._recency.add(e)
                if e.host_id != before:
                    self._move_host(e, before, e.host_id)
            self._may_end(e)
            out.append(e)
        return out
