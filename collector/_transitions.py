"""Idle/active transitions, runaway and stuck, hibernation due: pushed as they happen.

Every tick (:data:`TICK_S`) the engine re-evaluates only what may have changed:

* entities the ingest touched since the last tick (new activity, holds, status, bytes); an
  entity known to be plainly active is only checked for a runaway rate, since new activity
  cannot make it less active;
* entities whose scheduled check is due, from a timer heap keyed by the next time their
  evaluation can change with time alone (idle at ``idle_since + idle_after``, the deadline, the
  end of a hold, stuck at ``progress + stuck_after``; every second while runaway).

No tick scans all entities, so transitions fire within a tick of their due time at 100,000
sessions (``benchmarks/transitions.py``). A stale heap entry (the entity was active again in
the meantime) costs one evaluation and reschedules.
"""

from __future__ import annotations

import enum
import heapq
import itertools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final, NamedTuple

from lastactive.collector._activity import sources_of
from lastactive.collector._state import ActivityState, Entity, EntityView, Kind, view
from lastactive.collector.policy import Evaluation, IdleState, Policy, Rules, evaluate
from lastactive.conventions import ActivityClass, AgentStatus, Source

TICK_S: Final = 0.25
"""Seconds between ticks: transitions fire at most this late (plus the tick's own work)."""


class TransitionField(enum.StrEnum):
    """Which part of an entity's :class:`Condition` changed (a transition's ``field``)."""

    STATE = "state"
    RUNAWAY = "runaway"
    STUCK = "stuck"
    HIBERNATE = "hibernate"


NEW: Final = "new"
"""A transition's ``previous`` state for an entity seen for the first time."""


class Condition(NamedTuple):
    """What watchers are told about an entity: its :class:`IdleState` and flags, in
    :class:`TransitionField` order."""

    state: IdleState
    runaway: bool
    stuck: bool
    hibernate: bool

    @classmethod
    def of(cls, e: Evaluation) -> Condition:
        return cls(e.state, e.runaway, e.stuck, e.hibernate)


_PLAINLY_ACTIVE: Final = Condition(IdleState.ACTIVE, False, False, False)
_NOT_ENDED: Final = (None, str(AgentStatus.ACTIVE))


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of one field of an entity's :class:`Condition`; ``at`` in ns since the epoch.
    ``previous`` and ``current`` are the field's values as the APIs show them (``active``,
    ``idle``, ``hibernated``, :data:`NEW`; ``true``/``false`` for flags)."""

    at: int
    kind: str
    id: str
    host_id: str | None
    field: TransitionField
    previous: str
    current: str
    reason: str
    hibernate_at: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """An entity's current condition, for a new (or resynced) watcher."""

    view: EntityView
    evaluation: Evaluation


def _shown(value: object) -> str:
    """A condition field's value as the APIs show it."""
    if value is None:
        return NEW
    return str(value) if isinstance(value, IdleState) else str(value).lower()


class TransitionEngine:
    """Turns state changes and the passing of time into :class:`Transition` s.

    Args:
        state: the activity state (its touched set is drained every tick).
        policy: the idle policy.
        clock: ns since the epoch.
    """

    def __init__(self, state: ActivityState, policy: Policy, clock: Callable[[], int]) -> None:
        self._state = state
        self._policy = policy
        self._clock = clock
        self._known: dict[Entity, tuple[Condition, Rules]] = {}
        self._heap: list[tuple[int, int, Entity]] = []
        self._scheduled: dict[Entity, int] = {}  # earliest pending check per entity
        counted = set(policy.defaults.count)
        for _, rules, fields in policy.overrides:
            if "count" in fields:
                counted |= rules.count
        state.attribute_keys = policy.attribute_keys
        state.touching = sources_of(counted | {ActivityClass.LIFECYCLE})
        self._seq = itertools.count()
        self.transitions: dict[tuple[str, str], int] = {}
        """(field, current) -> transitions emitted since start (read by metrics)."""
        self.evaluations = 0
        self._runaway_since: dict[Entity, int] = {}  # runaway now, since (ns)
        self._runaway_ns: dict[Entity, int] = {}  # finished runaway spells, per session
        self._runaway_closed_ns = 0  # finished spells over the fleet, forgotten ones included

    def prime(self) -> None:
        """Learn every entity's current state without emitting transitions (at start)."""
        now = self._clock()
        for e in self._entities():
            self._check(e, now, None)
        self._state.take_touched()

    def _entities(self) -> list[Entity]:
        return [e for (k, _), e in self._state.entities.items() if k is not Kind.AGENT]

    def tick(self) -> list[Transition]:
        """Re-evaluate what may have changed; return the transitions, oldest first."""
        now = self._clock()
        out: list[Transition] = []
        for e in self._state.take_touched():
            if e.kind is Kind.AGENT:
                continue
            known = self._known.get(e)
            if (
                known is not None
                and known[0] == _PLAINLY_ACTIVE
                and Source.EXIT not in e.sources
                and e.status in _NOT_ENDED
                and e.rate_out.per_second(now) < known[1].runaway_bytes_per_second
            ):
                continue  # still plainly active; its scheduled check will see it go idle
            self._check(e, now, out)
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, e = heapq.heappop(heap)
            if self._scheduled.get(e) == due:
                del self._scheduled[e]
            if self._state.entities.get((e.kind, e.id)) is e:
                self._check(e, now, out)
        counts = self.transitions
        for t in out:
            key = (t.field, t.current)
            counts[key] = counts.get(key, 0) + 1
        return out

    def forget(self, gone: Iterable[Entity]) -> None:
        """Drop what the engine keeps of entities the retention purge removed: their condition
        and their pending check (a timer entry of a purged entity is skipped when it comes
        due)."""
        now = self._clock()
        for e in gone:
            self._known.pop(e, None)
            self._scheduled.pop(e, None)
            self._runaway_spell(e, False, now)  # its spell ends in the fleet's total
            self._runaway_ns.pop(e, None)

    def runaway_ns(self, e: Entity, now: int) -> int:
        """How long ``e`` has been runaway since the collector started (ns), the current
        spell included (a counter: seed 003's "time spent runaway")."""
        since = self._runaway_since.get(e)
        return self._runaway_ns.get(e, 0) + (now - since if since is not None else 0)

    def runaway_total_ns(self, now: int) -> int:
        """:meth:`runaway_ns` summed over every session, forgotten ones included (ns)."""
        return self._runaway_closed_ns + sum(now - t for t in self._runaway_since.values())

    def condition_of(self, e: Entity) -> Condition | None:
        """The entity's condition as of the last evaluation, or None if never evaluated."""
        known = self._known.get(e)
        return None if known is None else known[0]

    def snapshot(self, host_id: str | None = None, session_id: str | None = None) -> list[Snapshot]:
        """Current states of the sessions and hosts that match the filter."""
        now = self._clock()
        out = []
        for e in self._entities():
            if not matches(e.kind, e.id, e.host_id, host_id, session_id):
                continue
            v = view(e, now)
            out.append(Snapshot(v, evaluate(v, self._policy.rules_for(v), now)))
        return out

    def _runaway_spell(self, e: Entity, runaway: bool, now: int) -> None:
        if runaway:
            self._runaway_since[e] = now
            return
        since = self._runaway_since.pop(e, None)
        if since is not None:
            self._runaway_ns[e] = self._runaway_ns.get(e, 0) + now - since
            self._runaway_closed_ns += now - since

    def _check(self, e: Entity, now: int, out: list[Transition] | None) -> None:
        self.evaluations += 1
        v = view(e, now)
        rules = self._policy.rules_for(v)
        ev = evaluate(v, rules, now)
        current = Condition.of(ev)
        known = self._known.get(e)
        self._known[e] = (current, rules)
        if current.runaway != (known is not None and known[0].runaway):
            self._runaway_spell(e, current.runaway, now)
        if out is not None:
            previous = known[0] if known is not None else (None, False, False, False)
            for name, before, after in zip(TransitionField, previous, current, strict=True):
                if before != after:
                    out.append(
                        Transition(
                            at=now,
                            kind=v.kind,
                            id=v.id,
                            host_id=v.host_id,
                            field=name,
                            previous=_shown(before),
                            current=_shown(after),
                            reason=reason_of(ev, name),
                            hibernate_at=ev.hibernate_at,
                        )
                    )
        due = ev.next_change
        pending = self._scheduled.get(e)
        if due is not None and (pending is None or due < pending):
            # A later change is found when the pending (earlier) check runs and reschedules.
            self._scheduled[e] = due
            heapq.heappush(self._heap, (due, next(self._seq), e))


def reason_of(ev: Evaluation, field: TransitionField) -> str:
    """The reason, in words, for one field of an evaluation (runaway and stuck have their own;
    state and hibernate share the deadline's)."""
    if field is TransitionField.RUNAWAY:
        return ev.runaway_reason
    if field is TransitionField.STUCK:
        return ev.stuck_reason
    return ev.reason


def matches(
    kind: str, id_: str, host: str | None, host_id: str | None, session_id: str | None
) -> bool:
    """Does an entity pass a watch filter (host, session; ``None`` = any)?"""
    if session_id is not None and not (kind == Kind.SESSION and id_ == session_id):
        return False
    return host_id is None or host == host_id or (kind == Kind.HOST and id_ == host_id)
