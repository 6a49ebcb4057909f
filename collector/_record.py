"""An entity's persisted record and the one rule for combining two records of it.

:class:`EntityRecord` is what a store reads and writes; :func:`merge` is the specification of
how a stored record and an incoming one combine. ``ActivityState.load`` uses it, and every store
implements it (SQLite in SQL) and is checked against it by the store contract tests
(``tests/collector/test_store_contract.py``: random out-of-order batches end in the state the
fold of :func:`merge` gives). Times are ``int`` nanoseconds since the Unix epoch (UTC).

The rules, field by field (ANCHORS, "OTLP facts": retries, replays and reordering never move a
time backwards):

* ``first_seen`` is a min-register; ``last_seen``, every source's time, ``input_bytes`` and
  ``output_bytes`` are max-registers;
* ``host_id``, ``agent_id``, ``service_name``, ``pid``, ``exit_code``: the incoming value when it
  has one;
* ``holds``: per hold, the latest report wins (by report time, then ``until``); holds that ended
  more than :data:`HOLD_GRACE_NS` before the latest report are dropped, so a row does not grow
  with every connection ever made (a late write older than the grace could bring one back). An
  incoming record without holds leaves the stored ones as they are;
* ``status``, ``task``, ``result``: from the record whose ``status_time`` is later (ties: the
  incoming one), ``task`` and ``result`` kept when the later record has none;
* ``attributes``: key by key, the incoming value winning (RFC 7396 merge patch);
* ``turn``: from the record whose ``turn_time`` is later (ties: the incoming one).

Container fields are tuples sorted by key, so equal records compare equal whatever order their
parts arrived in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Final, NamedTuple, TypeVar

__all__ = [
    "HOLD_GRACE_NS",
    "INT32_MAX",
    "INT64_MAX",
    "MAX_ID_CHARS",
    "MAX_RESULT_CHARS",
    "MAX_TASK_CHARS",
    "RECORD_FIELDS",
    "Counted",
    "EntityRecord",
    "Heads",
    "StreamRecord",
    "StreamRise",
    "count_rises",
    "merge",
    "prune_holds",
]

_T = TypeVar("_T")

# What a record's fields can hold: every store keeps them (SQLite INTEGER and PostgreSQL bigint
# are int64; the query API's exit_code is int32), so ingest checks each value a client sends
# against these before it reaches state (issue 11: no value may break a flush or a query).
INT64_MAX: Final = 2**63 - 1
"""The largest time (ns: the year 2262) or byte total a record holds."""
INT32_MAX: Final = 2**31 - 1
"""Exit codes are in ``[-INT32_MAX - 1, INT32_MAX]`` (``int32 exit_code`` in the query API)."""
MAX_ID_CHARS: Final = 512
"""The longest session, agent or host id (characters)."""
MAX_TASK_CHARS: Final = 4096
"""The longest agent task kept (characters; longer ones are cut, ending in "…")."""
MAX_RESULT_CHARS: Final = 65536
"""The longest agent result or hold reason kept (characters; longer ones are cut)."""

HOLD_GRACE_NS: Final = 3600 * 1_000_000_000
"""How long (ns) an ended hold is kept after a later report of the entity's holds."""

Holds = tuple[tuple[str, int, int], ...]
"""``(kind:id, reported ns, until ns)`` per hold, sorted by key; until 0 = until released."""


@dataclass(slots=True, kw_only=True)
class EntityRecord:
    """A persisted snapshot of one entity (a session, agent or host), keyed by ``(kind, id)``.

    Fields are by keyword: a store derives its columns from :data:`RECORD_FIELDS`. A snapshot is
    never changed once made (not ``frozen``: a frozen dataclass's ``__init__`` costs 3.5 times
    as much, and the flush snapshots every changed entity on the event loop).
    """

    kind: str
    id: str
    host_id: str | None = None
    agent_id: str | None = None
    service_name: str | None = None
    first_seen: int
    last_seen: int
    sources: tuple[tuple[str, int], ...] = ()
    """``(source, last time)``, sorted by source."""
    input_bytes: int = 0
    output_bytes: int = 0
    pid: int | None = None
    exit_code: int | None = None
    holds: Holds = ()
    status: str | None = None
    """active | completed | error, from agent lifecycle events (seed 004), as of status_time."""
    status_time: int = 0
    task: str | None = None
    result: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()
    """Resource attributes the policy selects on, sorted by key."""
    turn: str | None = None
    """working | waiting: an agent session's turn (``lastactive.agent.turn``), as of turn_time."""
    turn_time: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.id)


RECORD_FIELDS: Final = tuple(f.name for f in fields(EntityRecord))
"""Every field of :class:`EntityRecord`, in order: a store's columns."""


class StreamRecord(NamedTuple):
    """A cumulative counter stream's baseline: its last point, so a restart neither loses nor
    double-counts what the stream counted (issue 11). Saved with the entities it counted into,
    in one transaction; merged by the latest ``time`` (ties: the incoming one)."""

    key: str
    """The stream's identity (resource identity, scope, metric, point attributes) as text."""
    start: int
    """The point's ``start_time_unix_nano`` (ns, the reporter's clock)."""
    time: int
    """The point's ``time_unix_nano`` (ns, the reporter's clock)."""
    value: float
    """The cumulative value at ``time``."""


class StreamRise(NamedTuple):
    """The points of one cumulative byte stream a replica received since its last commit, for
    a shared store to count against the stream's stored last point (issue 13: a stream whose
    points alternate between replicas counts each byte once, as one process would).

    ``runs``: ``(start, time, value, counted)`` per run of the stream (a new run at a reset:
    another ``start`` or a lower value), oldest first: the run's last point (``start`` and
    ``time`` in ns on the reporter's clock, the cumulative ``value``) and the bytes this
    replica counted from it (what the store adds when it has no point of the stream yet)."""

    key: str
    """The stream (:attr:`StreamRecord.key`)."""
    receive: bool
    """Bytes received (input) or sent (output)."""
    targets: tuple[tuple[str, str], ...]
    """The ``(kind, id)`` of the entities the bytes count into."""
    runs: tuple[tuple[int, int, float, int], ...]


@dataclass(slots=True)
class Counted:
    """Bytes a replica on a shared store counted since its last commit, which the store adds
    to its totals (``ActivityState.additive_io``): ``bytes`` ``(kind, id, input, output)`` from
    delta streams, ``streams`` the cumulative ones' points (:class:`StreamRise`)."""

    bytes: list[tuple[str, str, int, int]] = field(default_factory=list)
    streams: list[StreamRise] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.bytes or self.streams)


Heads = dict[str, tuple[StreamRecord | None, StreamRecord | None]]
"""Stream key -> its stored last point and the last point of the run before it (a reset
moved the last point to a new run), ``None`` when there is none."""


def count_rises(rises: Iterable[StreamRise], stored: Heads) -> list[tuple[str, str, int, int]]:
    """The bytes ``rises`` add to their targets, ``(kind, id, input, output)``, counted
    against each stream's stored last points (``stored``, updated in place): the rule of
    ``ActivityState.counter`` (a rise, or the whole value after a reset), applied to the
    stream's points in their reporter's order whichever replica received them and whenever it
    commits. A point not later than the stored last one adds nothing (the replica that stored
    that counted up to it) unless it is of the run before (a reset: the two runs' points went
    to two replicas): then it adds its rise over that run's stored last point, or its value
    when its run is newer than that (a reset nobody stored), or what the replica counted from
    it when the store has no run before; so does a stream with nothing stored. The last point
    of the run before moves with it. (A run older than the run before is not counted.)"""
    out: dict[tuple[str, str], list[int]] = {}
    for rise in rises:
        head, before = stored.get(rise.key, (None, None))
        added = 0
        for start, time, value, counted in rise.runs:
            point = StreamRecord(rise.key, start, time, value)
            if head is None:
                added += counted
                head = point
            elif time > head.time:
                if start == head.start and value >= head.value:
                    added += int(value - head.value)
                else:  # reset
                    added += int(value)
                    before = head
                head = point
            elif start == head.start:
                continue
            elif before is None:  # a run before the only one stored: nobody counted it
                added += counted
                before = point
            elif time <= before.time:
                continue
            elif start == before.start:
                if value >= before.value:
                    added += int(value - before.value)
                    before = point
            else:  # a run between the two stored ones, reset from the earlier
                added += int(value)
                before = point
        stored[rise.key] = (head, before)
        if added:
            for target in rise.targets:
                totals = out.setdefault(target, [0, 0])
                totals[not rise.receive] += added
    return [(kind, key, i, o) for (kind, key), (i, o) in sorted(out.items())]


def prune_holds(holds: Iterable[tuple[str, int, int]]) -> Holds:
    """The latest report of each hold (by report time, then ``until``), without those that
    ended more than :data:`HOLD_GRACE_NS` before the latest report; sorted by key."""
    best: dict[str, tuple[int, int]] = {}
    latest = 0
    for key, t, until in holds:
        prev = best.get(key)
        if prev is None or (t, until) > prev:
            best[key] = (t, until)
        latest = max(latest, t)
    horizon = latest - HOLD_GRACE_NS
    return tuple(
        (key, t, until) for key, (t, until) in sorted(best.items()) if not (0 < until < horizon)
    )


def _max_per_key(a: Iterable[tuple[str, int]], b: Iterable[tuple[str, int]]) -> dict[str, int]:
    out = dict(a)
    for key, t in b:
        if t > out.get(key, t - 1):
            out[key] = t
    return out


def _first(a: _T | None, b: _T | None) -> _T | None:
    """SQL's ``coalesce(a, b)``."""
    return a if a is not None else b


def merge(stored: EntityRecord, incoming: EntityRecord) -> EntityRecord:
    """``stored`` and ``incoming`` (the same entity) combined by the rules above.

    Raises:
        ValueError: the records are of different entities.
    """
    if stored.key != incoming.key:
        raise ValueError(f"cannot merge {stored.key} with {incoming.key}")
    later = incoming.status is not None and incoming.status_time >= stored.status_time
    turn_later = incoming.turn is not None and incoming.turn_time >= stored.turn_time
    return EntityRecord(
        kind=stored.kind,
        id=stored.id,
        host_id=_first(incoming.host_id, stored.host_id),
        agent_id=_first(incoming.agent_id, stored.agent_id),
        service_name=_first(incoming.service_name, stored.service_name),
        first_seen=min(stored.first_seen, incoming.first_seen),
        last_seen=max(stored.last_seen, incoming.last_seen),
        sources=tuple(sorted(_max_per_key(stored.sources, incoming.sources).items())),
        input_bytes=max(stored.input_bytes, incoming.input_bytes),
        output_bytes=max(stored.output_bytes, incoming.output_bytes),
        pid=_first(incoming.pid, stored.pid),
        exit_code=_first(incoming.exit_code, stored.exit_code),
        holds=prune_holds((*stored.holds, *incoming.holds)) if incoming.holds else stored.holds,
        status=incoming.status if later else stored.status,
        status_time=max(stored.status_time, incoming.status_time),
        task=_first(incoming.task, stored.task) if later else stored.task,
        result=_first(incoming.result, stored.result) if later else stored.result,
        attributes=tuple(sorted({**dict(stored.attributes), **dict(incoming.attributes)}.items())),
        turn=incoming.turn if turn_later else stored.turn,
        turn_time=max(stored.turn_time, incoming.turn_time),
    )
