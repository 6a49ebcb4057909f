"""Idle/active transitions, runaway and stuck, hibernation due: pushed as they happen.

Every tick (:data:`TICK_S`) the engine re-evaluates only what may have changed:

* entities the ingest touched since the last tick (new activity, holds, status, bytes); an
  entity known to be plainly active is only checked for a runaway rate, since new activity
  cannot make it less active;
* entities whose scheduled check is due (:mod:`~lastactive.collector._timers`), at the next
  time their evaluation can change with time alone (idle at ``idle_since + idle_after``, the
  deadline, the end of a hold, stuck at ``progress + stuck_after``; every second while
  runaway).

No tick scans all entities, so transitions fire within a tick of their due time at 100,000
sessions (``benchmarks/transitions.py``). An entity active again before its check costs one
evaluation at the check, which reschedules. A tick does at most ``budget`` evaluations;
the rest waits for the next call (:attr:`TransitionEngine.behind`), so the caller can yield to
the event loop between slices.

Each evaluation also keeps the indexes the fleet-wide questions read instead of walking every
entity (issue 15): sessions per state, per host and state, runaway or stuck (``/metrics``),
the deadlines in order and what is held up (``/v1/decisions``).
They say what the last evaluation said; an entity the tick skips as "plainly active" has a
deadline no earlier than its indexed one (activity only moves deadlines later; one with holds
or policy attributes is never skipped), so the indexed deadlines find every entity due within a
window, and each candidate is evaluated afresh before it is answered.
"""

from __future__ import annotations

import enum
import itertools
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Final, NamedTuple

from lastactive.collector._activity import sources_of
from lastactive.collector._deadlines import DeadlineIndex, IndexedKey
from lastactive.collector._sliced import Sliced, whole
from lastactive.collector._state import (
    ActivityState,
    Entity,
    EntityView,
    Kind,
    view,
)
from lastactive.collector._timers import Timers
from lastactive.collector.policy import (
    Decisions,
    DecisionsBuilder,
    Evaluation,
    IdleState,
    Policy,
    evaluate,
)
from lastactive.conventions import ActivityClass, AgentStatus, Source

TICK_S: Final = 0.05
"""Seconds between a collector's ticks: transitions fire at most this late (plus the tick's own
work). A tick that finds nothing due costs ~1 us."""
TICK_BUDGET: Final = 32
"""Evaluations per slice of a tick (15-40 us each at 1M sessions: a slice keeps the event loop
~0.5-1.3 ms; issue 15 asks GET p99 <= 2 ms under load, and 250 a slice held GETs up 10-30 ms)."""
RECENT_BUDGET: Final = 250
"""Recent-activity checks per slice of a tick (~2 us each: :meth:`~lastactive.collector.
_state.ActivityState.age_recent`)."""
DECISIONS_SLICE: Final = 128
"""Entities evaluated per slice of :meth:`TransitionEngine.decisions_sliced` (6-17 us each
at 1M sessions: a slice holds the event loop ~1-2 ms)."""
SNAPSHOT_PAGE: Final = 250
"""Entities per page of a watch snapshot (each page is evaluated as it is sent: ~2.5 ms of the
event loop with its JSON at 100k sessions). 1000 a page held the loop ~10 ms a page, and with
two fleet-wide watchers starting at 100k, 20 lag probes were over 50 ms (worst 62 ms); 250: none,
worst 18 ms, the snapshots as fast (``benchmarks/watch.py``; issue 15)."""


class TransitionField(enum.StrEnum):
    """Which part of an entity's :class:`Condition` changed (a transition's ``field``)."""

    STATE = "state"
    RUNAWAY = "runaway"
    STUCK = "stuck"
    HIBERNATE = "hibernate"


_FIELDS: Final = tuple(TransitionField)
"""The fields in order (iterating the enum class itself costs ~1 us a time)."""

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


_CONDITIONS: Final = {
    c: c
    for c in (
        Condition(state, runaway, stuck, hibernate)
        for state in IdleState
        for runaway in (False, True)
        for stuck in (False, True)
        for hibernate in (False, True)
    )
}
"""Every condition once: entities share these instead of holding a tuple each."""
_BY_TEXT: Final = {f"{c.state}:{c.runaway:d}{c.stuck:d}{c.hibernate:d}": c for c in _CONDITIONS}
_TEXT: Final = {c: text for text, c in _BY_TEXT.items()}


def condition_text(c: Condition) -> str:
    """``c`` as stored (the ``emitted`` table): ``"<state>:<runaway><stuck><hibernate>"``,
    flags as 0 or 1, e.g. ``"idle:001"``."""
    return _TEXT[c]


def condition_from_text(text: str | None) -> Condition | None:
    """The shared condition :func:`condition_text` made ``text`` from; ``None`` for ``None``
    or text that is none (a hand-edited row is treated as never emitted)."""
    return None if text is None else _BY_TEXT.get(text)


_PLAINLY_ACTIVE: Final = _CONDITIONS[Condition(IdleState.ACTIVE, False, False, False)]
"""The shared active condition (the tick compares with ``is``)."""
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


def snapshot_of(e: Entity, policy: Policy, now: int) -> Snapshot:
    """``e`` as a watcher's snapshot shows it at ``now`` (ns): its view and the policy's
    evaluation."""
    v = view(e, now)
    return Snapshot(v, evaluate(v, policy.rules_for(v), now))


_SHOWN: Final[dict[object, str]] = {
    None: NEW,
    False: "false",
    True: "true",
    **{s: str.__str__(s) for s in IdleState},
}


def _shown(value: object) -> str:
    """A condition field's value as the APIs show it (one shared ``str`` per value: a
    transition kept for resuming watchers holds no string of its own for it)."""
    return _SHOWN[value]


class TransitionEngine:
    """Turns state changes and the passing of time into :class:`Transition` s.

    Args:
        state: the activity state (its touched set is drained every tick).
        policy: the idle policy.
        clock: ns since the epoch.
        owns: which entities this engine evaluates (``None``: all). A replica on a shared
            store evaluates the entities of the shards it holds (:mod:`lastactive.collector.
            _replica`); the others' are skipped by the tick, and learnt with :meth:`adopt`
            when their shard comes to it.
    """

    def __init__(
        self,
        state: ActivityState,
        policy: Policy,
        clock: Callable[[], int],
        owns: Callable[[Entity], bool] | None = None,
    ) -> None:
        self._state = state
        self._owns = owns
        self._policy = policy
        self._clock = clock
        self._timers = Timers()
        counted = set(policy.defaults.count)
        for _, rules, fields in policy.overrides:
            if "count" in fields:
                counted |= rules.count
        state.attribute_keys = policy.attribute_keys
        state.touching = sources_of(counted | {ActivityClass.LIFECYCLE})
        self.transitions: dict[tuple[str, str], int] = {}
        """(field, current) -> transitions emitted since start (read by metrics)."""
        self.evaluations = 0
        self._runaway_since: dict[Entity, int] = {}  # runaway now, since (ns)
        self._runaway_ns: dict[Entity, int] = {}  # finished runaway spells, per session
        self._runaway_closed_ns = 0  # finished spells over the fleet, forgotten ones included
        self._pending: list[Entity] = []  # touched, not yet evaluated (a tick ran out)
        self._aging = False  # recent-activity checks are due that a tick left for the next
        self._deadlines = DeadlineIndex()  # by hibernate_at, in the lists' order
        self._held: dict[Entity, None] = {}  # held up by a hold that counts, not due
        # Evaluated entities whose deadline or held flag changed since take_moved (a replica
        # writes them for the other replicas' decisions; None: alone, nothing to write).
        self._moved: dict[Entity, None] | None = None if owns is None else {}
        self.sessions_by_state: dict[IdleState, int] = dict.fromkeys(IdleState, 0)
        """Sessions per state as last evaluated (read by metrics)."""
        self.sessions_flagged: dict[str, int] = {"runaway": 0, "stuck": 0, "hibernate_due": 0}
        """Sessions runaway, stuck, due to hibernate (read by metrics)."""
        self.host_sessions: dict[tuple[str, IdleState], int] = {}
        """(host id or "", state) -> sessions (read by metrics)."""
        self.flagged: dict[Entity, None] = {}
        """Sessions runaway or stuck as last evaluated (metrics' per-session series)."""

    def prime(self, loaded: Iterable[Entity] | None = None) -> None:
        """Learn entities' current state without emitting transitions (at start): those just
        ``loaded`` that the engine does not know yet (one known already came in telemetry
        while the state loaded, and is touched), or (``None``) every entity, forgetting what
        was touched."""
        now = self._clock()
        if loaded is None:
            for e in self._entities():
                self._check(e, now, None)
            self._state.take_touched()
            return
        for e in loaded:
            if e.kind is not Kind.AGENT and e.condition is None:
                self._check(e, now, None)

    def adopt(self, e: Entity, emitted: Condition | None) -> None:
        """Take over ``e`` from another evaluator (its shard came to this replica): what was
        last emitted for it (``None``: nothing) becomes its condition, and the next tick
        evaluates it, emitting what changed since (so a transition its previous owner did not
        emit comes once, and one it did emit does not come again)."""
        if e.condition is not None:
            self.forget((e,))
        if emitted is not None:
            e.condition, e.counted_host = emitted, e.host_id
            self._index(e, None, None, None)
        self._pending.append(e)

    def _entities(self) -> list[Entity]:
        of_kind = self._state.entities
        return [*of_kind[Kind.SESSION].values(), *of_kind[Kind.HOST].values()]

    @property
    def behind(self) -> bool:
        """A tick ran out of budget: evaluations (or recent-activity checks) wait for the
        next call."""
        return self._aging or bool(self._pending) or self._timers.any_due(self._clock())

    def tick(self, budget: int | None = None) -> list[Transition]:
        """Re-evaluate what may have changed, at most ``budget`` evaluations (``None``: all),
        and run the state's recent-activity checks that came due (:data:`RECENT_BUDGET` with a
        ``budget``); return the transitions, oldest first."""
        now = self._clock()
        out: list[Transition] = []
        pending = self._pending
        pending.extend(self._state.take_touched())
        left = sys.maxsize if budget is None else budget
        entities, owns = self._state.entities, self._owns
        while pending and left > 0:
            e = pending.pop()
            if e.kind is Kind.AGENT or entities[e.kind].get(e.id) is not e:
                continue  # purged while it waited: forgotten, not evaluated again
            if owns is not None and not owns(e):
                continue  # another replica's
            if _stays_plainly_active(e, now):
                continue  # its scheduled check will see it go idle
            left -= 1
            self._check(e, now, out)
        for e in self._timers.pop_due(now, left):
            if entities[e.kind].get(e.id) is e and (owns is None or owns(e)):
                self._check(e, now, out)
        self._aging = self._state.age_recent(now, None if budget is None else RECENT_BUDGET)
        counts = self.transitions
        for t in out:
            key = (t.field, t.current)
            counts[key] = counts.get(key, 0) + 1
        return out

    def decisions(self, now: int, within_ns: int, limit: int | None = None) -> Decisions:
        """:meth:`decisions_sliced` at once."""
        return whole(self.decisions_sliced(now, within_ns, limit))

    def decisions_sliced(
        self, now: int, within_ns: int, limit: int | None = None
    ) -> Sliced[Decisions]:
        """:func:`~lastactive.collector.policy.decide` at ``now`` (ns): the same answer as
        over every entity, each list cut to its first ``limit`` (``None``: whole), evaluated
        :data:`DECISIONS_SLICE` entities a slice (issue 15: at 1M sessions a thousand entries
        a list held the event loop 35-60 ms in one piece). Each entity is evaluated at ``now``
        as it is when its slice runs: one that changed after ``now`` and was already evaluated
        is answered as it was, like one that changed after an answer made at once.

        Evaluated afresh: what is held up; what the next tick would evaluate first (changed
        since the last one and not :func:`_stays_plainly_active`: a new session, a new hold);
        then the indexed deadlines in order, due now from the earliest, due soon from ``now``.
        An indexed deadline is never later than the entity's own, and one at or before ``now``
        is its own unless the entity's scheduled check (never later than its deadline) is due
        and has not run: the tick is behind. The index breaks ties of deadlines by kind, then
        id, as the lists do, so each walk stops once ``limit + 1`` of its list's entries sort
        before the next indexed one; then of the entities with a check due, those indexed
        between where the due-now walk stopped and ``now`` (their own deadline may be later:
        due soon) are evaluated too. The call costs what changed, what is held, about ``2 *
        limit`` deadlines and a look at what the tick has due, not the fleet (ties of deadlines
        included), and does not wait for the tick: issue 15, at 1M sessions a second's 16k
        sessions going idle kept decisions waiting for the tick up to 300 ms. The walks read
        the index a slice at a time (it may change between slices: an entity it moves is
        evaluated at most once).
        """
        builder = DecisionsBuilder(self._policy, now, within_ns)
        entities = self._state.entities
        done: set[Entity] = set()

        def candidates() -> Iterator[Entity]:
            yield from list(self._held)
            changed = [*self._pending, *self._state.touched()]
            yield from (e for e in changed if not _stays_plainly_active(e, now))
            # (else the tick skips it too: it is indexed)
            stopped = None  # where the due-now walk stopped: (deadline, kind, id)
            for soon, lowest, highest in ((False, None, now), (True, (now + 1,), now + within_ns)):
                for key in self._indexed(lowest, highest):
                    if not builder.wants(key[:3], soon, limit):
                        if not soon:
                            stopped = key[:3]
                        break
                    yield key[3]
            if stopped is not None:
                for e in list(self._timers.due(now)):
                    indexed = e.deadline
                    if (
                        indexed is not None
                        and indexed <= now
                        and (indexed, e.kind, e.id) >= stopped
                    ):
                        yield e

        left = DECISIONS_SLICE
        for e in candidates():
            if e.kind is not Kind.AGENT and e not in done and entities[e.kind].get(e.id) is e:
                done.add(e)
                builder.add(view(e, now))
                left -= 1
                if not left:
                    yield
                    left = DECISIONS_SLICE
        return builder.result(limit)

    def _indexed(self, lowest: tuple[int] | None, highest: int) -> Iterator[IndexedKey]:
        """The deadline index's keys from ``lowest`` up to ``highest`` (ns) included, read
        :data:`DECISIONS_SLICE` at a time (so the index may change between reads)."""
        deadlines = self._deadlines
        start: tuple[int] | IndexedKey | None = lowest
        inclusive = True
        while True:
            keys = list(
                itertools.islice(deadlines.irange(start, highest, inclusive), DECISIONS_SLICE)
            )
            yield from keys
            if len(keys) < DECISIONS_SLICE:
                return
            start, inclusive = keys[-1], False

    def is_held(self, e: Entity) -> bool:
        """Was ``e`` held up (a hold that counts, not due) at its last evaluation?"""
        return e in self._held

    def take_moved(self) -> list[Entity]:
        """The entities (of this engine's, ``owns`` given) whose deadline or held flag changed
        at an evaluation since the last call: what a replica writes to the shared index
        (:meth:`~lastactive.collector._pg_cluster.PostgresCluster.emit`)."""
        moved = self._moved
        if not moved:
            return []
        out = list(moved)
        moved.clear()
        return out

    def on_host(self, host_id: str) -> list[Entity]:
        """The sessions on ``host_id`` (the state's host index)."""
        return self._state.on_host(host_id)

    def forget(self, gone: Iterable[Entity]) -> None:
        """Drop what the engine keeps of entities the retention purge removed: their condition
        and their pending check (a timer entry of a purged entity is skipped when it comes
        due)."""
        now = self._clock()
        for e in gone:
            before = e.condition
            if before is not None:
                host, deadline = e.counted_host, e.deadline
                e.condition = e.rules = e.counted_host = e.deadline = None
                self._index(e, before, host, deadline)
            e.check_at = None
            if self._moved is not None:
                self._moved.pop(e, None)
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
        return e.condition

    def snapshot(self, host_id: str | None = None, session_id: str | None = None) -> list[Snapshot]:
        """Current states of the sessions and hosts that match the filter (all pages)."""
        return [s for page in self.snapshot_pages(host_id, session_id) for s in page]

    def snapshot_pages(
        self, host_id: str | None = None, session_id: str | None = None, size: int = SNAPSHOT_PAGE
    ) -> Iterator[list[Snapshot]]:
        """:meth:`snapshot` in pages of ``size``, each evaluated when it is asked for (so a
        fleet-wide snapshot does not hold the event loop); at least one page, maybe empty.
        Which entities match is decided at the call: the one session, the host and its
        sessions (the host index), or every session and host."""
        entities = self._state.entities
        chosen: list[Entity]
        if session_id is not None:
            one = entities[Kind.SESSION].get(session_id)
            chosen = [] if one is None or host_id not in (None, one.host_id) else [one]
        elif host_id is not None:
            host = entities[Kind.HOST].get(host_id)
            chosen = ([] if host is None else [host]) + self.on_host(host_id)
        else:
            chosen = self._entities()  # copies in C
        for i in range(0, max(len(chosen), 1), size):
            now = self._clock()
            page = []
            for e in chosen[i : i + size]:
                if e.kind is not Kind.AGENT and entities[e.kind].get(e.id) is e:
                    page.append(snapshot_of(e, self._policy, now))
            yield page

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
        current = _CONDITIONS[Condition.of(ev)]
        before, host, deadline = e.condition, e.counted_host, e.deadline
        e.condition, e.rules, e.counted_host, e.deadline = (
            current,
            rules,
            e.host_id,
            ev.hibernate_at,
        )
        self._index(e, before, host, deadline)
        held = self._held
        was_held = e in held
        if ev.held_by and not ev.hibernate:
            held[e] = None
        else:
            held.pop(e, None)
        moved = self._moved
        if moved is not None and (deadline != ev.hibernate_at or was_held != (e in held)):
            moved[e] = None
        if current.runaway != (before is not None and before.runaway):
            self._runaway_spell(e, current.runaway, now)
        if out is not None:
            previous = before if before is not None else (None, False, False, False)
            for name, was, now_is in zip(_FIELDS, previous, current, strict=True):
                if was != now_is:
                    out.append(
                        Transition(
                            at=now,
                            kind=v.kind,
                            id=v.id,
                            host_id=v.host_id,
                            field=name,
                            previous=_shown(was),
                            current=_shown(now_is),
                            reason=reason_of(ev, name),
                            hibernate_at=ev.hibernate_at,
                        )
                    )
        if ev.next_change is not None:
            self._timers.schedule(e, ev.next_change)

    def _index(
        self, e: Entity, before: Condition | None, host: str | None, deadline: int | None
    ) -> None:
        """Move ``e`` in the indexes from its previous evaluation (``before``: its condition,
        the host it was counted under, its deadline; ``None``: never evaluated) to what its
        slots say now (``e.condition`` ``None``: forgotten)."""
        after = e.condition
        new = e.deadline if after is not None else None
        if deadline != new:
            if deadline is not None:
                self._deadlines.remove(e, deadline)
            if new is not None:
                self._deadlines.add(e, new)
        if after is None:
            self._held.pop(e, None)
        if e.kind is not Kind.SESSION:
            return
        if before is not None:
            self._count(before, host, -1)
        if after is not None and (after.runaway or after.stuck):
            self.flagged[e] = None
        else:
            self.flagged.pop(e, None)
        if after is not None:
            self._count(after, e.counted_host, 1)

    def _count(self, c: Condition, host: str | None, n: int) -> None:
        self.sessions_by_state[c.state] += n
        key = (host or "", c.state)
        left = self.host_sessions.get(key, 0) + n
        if left:
            self.host_sessions[key] = left
        else:
            self.host_sessions.pop(key, None)
        flagged = self.sessions_flagged
        flagged["runaway"] += n * c.runaway
        flagged["stuck"] += n * c.stuck
        flagged["hibernate_due"] += n * c.hibernate


def _stays_plainly_active(e: Entity, now: int) -> bool:
    """Was ``e`` plainly active at its last evaluation, and would it still be at ``now`` (ns),
    whatever touched it since? Then neither its condition nor its place in the indexes can
    have changed, but for a deadline no earlier than its indexed one: activity only moves
    deadlines later, and an entity with holds, policy attributes, an exit or an ended status
    never passes. A few attribute reads instead of an evaluation (15-40 us)."""
    return (
        e.condition is _PLAINLY_ACTIVE
        and e.counted_host == e.host_id  # else it moved: counted under its new host
        and not e.holds
        and e.details.attributes is None
        and Source.EXIT not in e.source_names
        and e.details.status in _NOT_ENDED
        and e.rules is not None
        and e.rate_out.per_second(now) < e.rules.runaway_bytes_per_second
    )


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
