"""Idle policy: which activity counts, when a session is idle, when it should hibernate, and why.

A policy file (TOML) has ``[defaults]`` and ``[[overrides]]`` selected by host, agent name,
service name, session id prefix or resource attributes of the session's telemetry (such as
``deployment.environment.name``); later overrides win. Every key is validated at load, and an
error names the key (and, for TOML syntax, the line)::

    [defaults]
    count = ["engagement", "work", "lifecycle"]   # activity classes that end idleness
    count_untrusted = true                        # self-reported sources count (seed 000)
    idle_after = 60                               # seconds without counted activity (seed 003)
    hibernate_after = 1800                        # the activity bump (Coder's deadline model)
    max_age = 86400                               # hibernate regardless of activity (optional)
    after_close = 120                             # shorter, once the last client detached
    never_used = 600                              # no engagement or work since first seen
    exempt_leases = true                          # a busy lease holds the session up
    exempt_foreground = true                      # so does a running foreground command
    exempt_clients = false                        # an attached client does not, by default
    runaway_bytes_per_second = 1048576            # output rate that is "spinning" (seed 003)
    stuck_after = 1800                            # agent active without progress (seed 004)
    lost_after = 60                               # a running process's liveness lapsed
    exempt_tools = true                           # an agent's tool call in flight holds it up
    tool_call_max = 3600                          # ... for at most this long (a lost end)

    [[overrides]]
    match = { agent = "codey" }
    idle_after = 300

    [[overrides]]
    match = { attributes = { "deployment.environment.name" = "ci" } }
    hibernate_after = 300

The evaluation (:func:`evaluate`) is pure: an :class:`~lastactive.collector._state.EntityView`,
rules and ``now`` in, a :class:`Evaluation` with its state, deadline and reason in words out.
"""

from __future__ import annotations

import enum
import functools
import heapq
import time
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lastactive.collector._activity import idle_since, last_counted, latest, stuck_since
from lastactive.collector._state import NANOS, EntityView, Hold, ProcessStatus
from lastactive.conventions import (
    IDLE_CLASSES,
    ActivityClass,
    AgentStatus,
    AgentTurn,
    HoldKind,
    Source,
)

__all__ = [
    "MAX_DURATION_S",
    "Decision",
    "Decisions",
    "DecisionsBuilder",
    "Evaluation",
    "IdleState",
    "ListedKey",
    "Match",
    "Policy",
    "PolicyError",
    "Rules",
    "decide",
    "evaluate",
    "load_policy",
]


_USE: Final = frozenset({ActivityClass.ENGAGEMENT, ActivityClass.WORK})
"""What ``never_used`` looks for: a person's engagement or the workload's work (issue 10: an
agent working unattended is used)."""


class IdleState(enum.StrEnum):
    """What the policy says of a session or host now: :attr:`Evaluation.state`, the APIs'
    ``state``. (Not :class:`~lastactive.collector._state.ActivityState`, which holds every
    entity, nor the session ``status`` of seed 004: active, completed, error.)"""

    ACTIVE = "active"
    """Counted activity within ``idle_after``, or held up by an exempt hold."""
    IDLE = "idle"
    """No counted activity for ``idle_after`` and nothing exempt holds it up."""
    HIBERNATED = "hibernated"
    """Hibernated (``cull`` recorded it) and not used since."""
    ENDED = "ended"
    """The session completed or failed (its process exited, or a seed 004 complete/error
    event): final, never idle, runaway, stuck or due, until it starts again."""


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the line or the key."""


MAX_DURATION_S: Final = 100 * 365 * 86400.0
"""The longest duration a rule takes (seconds: 100 years; in ns it still adds to any time
without passing int64)."""


def _seconds(default: float | None) -> Any:
    """A duration field: seconds, finite, in ``(0, MAX_DURATION_S]``."""
    return Field(default, gt=0, le=MAX_DURATION_S, allow_inf_nan=False)


class Rules(BaseModel):
    """One set of rules. Durations are seconds in ``(0, MAX_DURATION_S]``; ``None`` turns a
    timeout off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: frozenset[ActivityClass] = IDLE_CLASSES
    count_untrusted: bool = True
    idle_after: float = _seconds(60.0)
    hibernate_after: float = _seconds(1800.0)
    max_age: float | None = _seconds(None)
    after_close: float | None = _seconds(None)
    never_used: float | None = _seconds(None)
    exempt_leases: bool = True
    exempt_foreground: bool = True
    exempt_clients: bool = False
    runaway_bytes_per_second: float = Field(1024 * 1024, gt=0, allow_inf_nan=False)
    stuck_after: float = _seconds(1800.0)
    lost_after: float = _seconds(60.0)
    exempt_tools: bool = True
    tool_call_max: float = _seconds(3600.0)


class Match(BaseModel):
    """Which sessions an override applies to; every given field must match.

    ``attributes`` compares resource attributes (as strings) of the entity's telemetry: each
    given key must have been seen with that value (the latest value per key counts).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str | None = None
    agent: str | None = None
    service: str | None = None
    session_prefix: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)

    def matches(self, v: EntityView) -> bool:
        return (
            (
                self.host is None
                or v.host_id == self.host
                or (v.kind == "host" and v.id == self.host)
            )
            and (self.agent is None or v.agent_id == self.agent)
            and (self.service is None or v.service_name == self.service)
            and (self.session_prefix is None or v.id.startswith(self.session_prefix))
            and all(v.attributes.get(k) == want for k, want in self.attributes.items())
        )


class _Override(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    match: Match


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    defaults: Rules = Rules()
    overrides: list[_Override] = []


@dataclass(frozen=True, slots=True)
class Policy:
    """Defaults plus ordered overrides (each a match and the rule fields it sets)."""

    defaults: Rules = field(default_factory=Rules)
    overrides: tuple[tuple[Match, Rules, frozenset[str]], ...] = ()

    @property
    def attribute_keys(self) -> frozenset[str]:
        """Every resource attribute key an override selects on (what state must keep)."""
        return frozenset(k for match, _, _ in self.overrides for k in match.attributes)

    def evaluate(self, v: EntityView, now: int) -> Evaluation:
        """:func:`evaluate` ``v`` at ``now`` (ns) under the rules that apply to it."""
        return evaluate(v, self.rules_for(v), now)

    def rules_for(self, v: EntityView) -> Rules:
        """The rules that apply to ``v``: the defaults with every matching override on top."""
        rules = self.defaults
        for match, override, fields in self.overrides:
            if match.matches(v):
                rules = rules.model_copy(update={f: getattr(override, f) for f in fields})
        return rules


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyError: unreadable file, TOML syntax (with its line), or an invalid key or value
            (with its path, e.g. ``overrides[1].idle_after``).
    """
    try:
        with Path(path).open("rb") as f:
            raw = tomllib.load(f)
    except OSError as exc:
        raise PolicyError(f"{path}: {exc.strerror}") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: {exc}") from exc
    except RecursionError:
        raise PolicyError(f"{path}: nested too deeply") from None
    return parse_policy(raw, str(path))


def _problems(exc: ValidationError, prefix: str) -> str:
    return "; ".join(
        f"{prefix}{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
    )


def parse_policy(raw: dict[str, Any], source: str = "policy") -> Policy:
    """Validate an already parsed policy mapping (see :func:`load_policy`)."""
    try:
        parsed = _PolicyFile.model_validate(raw)
    except ValidationError as exc:
        raise PolicyError(f"{source}: {_problems(exc, '')}") from None
    overrides = []
    for i, o in enumerate(parsed.overrides):
        fields = dict(o.model_extra or {})
        try:
            rules = Rules.model_validate(fields)
        except ValidationError as exc:
            raise PolicyError(f"{source}: {_problems(exc, f'overrides[{i}].')}") from None
        overrides.append((o.match, rules, frozenset(fields)))
    return Policy(parsed.defaults, tuple(overrides))


class Evaluation(NamedTuple):
    """What the policy says of one session or host at ``now``. Times are ns since the epoch.
    A named tuple, like :class:`~lastactive.collector._state.EntityView`: one is made per
    evaluation (each tick, start-up's prime, every entry of a query), and a frozen dataclass's
    ``__init__`` cost a quarter of :func:`evaluate` (issue 15).

    ``hibernate_at`` is the deadline (``None`` while something exempt holds it up, unless
    ``max_age`` caps it); ``hibernate`` is whether it is due now. Each flag has its reason in
    words: ``reason`` for the state and the deadline, ``runaway_reason``, ``stuck_reason``.
    ``held_by`` are the holds that count (exempt under the rules) now. ``lost``: the session's
    process was running, but its liveness (the ``process`` source its wrapper renews every
    export interval) is older than ``lost_after``: the wrapper died without reporting an exit.
    ``next_change`` is the earliest later time the evaluation can change with time alone (no
    new telemetry), for the transition engine's timer; ``None`` when it cannot.
    """

    state: IdleState
    idle_since: int
    hibernate_at: int | None
    hibernate: bool
    runaway: bool
    stuck: bool
    reason: str
    runaway_reason: str = ""
    stuck_reason: str = ""
    held_by: tuple[Hold, ...] = ()
    lost: bool = False
    next_change: int | None = None


_RUNAWAY_RECHECK_NS: Final = NANOS
"""While runaway, the rate is re-read this often (ns): it decays with no new telemetry."""


def _ago(ns: int) -> str:
    s = ns / NANOS
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.0f} min" if s < 7200 else f"{s / 3600:.1f} h"


def _clock(ns: int) -> str:
    """A time of day, UTC (``14:02``), for "since ..." reasons."""
    return time.strftime("%H:%M", time.gmtime(ns / NANOS))


def _rate(bps: float) -> str:
    if bps < 1e3:  # most entities: nothing or little
        return f"{bps:.0f} B/s"
    for unit, size in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bps >= size:
            return f"{bps / size:.1f} {unit}"
    return f"{bps:.0f} B/s"


@functools.cache  # a policy's few limits, formatted at every evaluation
def _size(bps: float) -> str:
    for unit, size in (("GiB/s", 2**30), ("MiB/s", 2**20), ("KiB/s", 2**10)):
        if bps >= size:
            return f"{bps / size:g} {unit}"
    return f"{bps:g} B/s"


def _counting_holds(v: EntityView, rules: Rules, now: int) -> tuple[list[Hold], list[int]]:
    """The holds that exempt ``v`` under ``rules`` at ``now``, and when each stops counting
    (ns; a tool call counts for at most ``tool_call_max`` after it was reported)."""
    if not v.held_by:  # most entities, most of the time
        return [], []
    exempt = {
        HoldKind.LEASE: rules.exempt_leases,
        HoldKind.FOREGROUND: rules.exempt_foreground,
        HoldKind.CLIENT: rules.exempt_clients,
        HoldKind.TOOL: rules.exempt_tools,
    }
    holding, ends = [], []
    tool_max = int(rules.tool_call_max * NANOS)
    for h in v.held_by:
        if not exempt.get(HoldKind(h.kind), False):
            continue
        end = h.until
        if h.kind == HoldKind.TOOL:
            end = min(end or h.since + tool_max, h.since + tool_max)
            if end <= now:
                continue
        holding.append(h)
        if end:
            ends.append(end)
    return holding, ends


# Enum members and string keys as plain module constants on the evaluation path: on Python
# 3.11 a member lookup costs ~45 ns and a dict lookup by a StrEnum ~2x one by its str; ~10 per
# evaluation (issue 15).
_WAITING: Final = AgentTurn.WAITING
_WORKING: Final = AgentTurn.WORKING
_ACTIVE_STATUS: Final = AgentStatus.ACTIVE
_HIBERNATED: Final = IdleState.HIBERNATED
_IDLE: Final = IdleState.IDLE
_ACTIVE: Final = IdleState.ACTIVE
_ENDED: Final = IdleState.ENDED
_HIBERNATE: Final = str(Source.HIBERNATE)
_PROCESS: Final = str(Source.PROCESS)
_TOOL: Final = HoldKind.TOOL
_NOT_AN_AGENT: Final = (False, "not an agent session", None)


def _stuck(
    v: EntityView, rules: Rules, now: int, tools: list[Hold]
) -> tuple[bool, str, int | None]:
    """Seed 004's stuck flag, its reason, and when it could start (ns)."""
    if v.turn == _WAITING:
        return False, f"waiting for the user since {_clock(v.turn_since or now)}", None
    if tools:
        names = ", ".join(sorted(h.id for h in tools))
        since = _clock(min(h.since for h in tools))
        return False, f"tool call {names} in flight since {since}", None
    if v.agent_id is None:  # most sessions
        return _NOT_AN_AGENT
    stuck_after = int(rules.stuck_after * NANOS)
    working = v.turn_since or 0 if v.turn == _WORKING else 0
    stuck_at = stuck_since(v.sources, v.agent_id, stuck_after, working)
    if stuck_at is None:
        return False, "no progress yet", None
    without = _ago(now - (stuck_at - stuck_after))
    if now >= stuck_at:
        return True, f"no progress for {without} >= stuck_after {_ago(stuck_after)}", None
    return False, f"progress {without} ago < stuck_after {_ago(stuck_after)}", stuck_at


def process_shown(v: EntityView, e: Evaluation) -> ProcessStatus | None:
    """The process status both APIs show: ``lost`` once the policy finds its liveness lapsed
    (``lost_after``), else the view's (running, exited; ``None`` when never started)."""
    if e.lost:
        return ProcessStatus.LOST
    return None if v.process_status is None else ProcessStatus(v.process_status)


def evaluate(v: EntityView, rules: Rules, now: int) -> Evaluation:
    """Apply ``rules`` to ``v`` at ``now`` (ns).

    Deadline model (ANCHORS, Coder): counted activity at ``t`` bumps the deadline to
    ``t + hibernate_after``; activity times are max-registers, so the deadline never moves
    backwards with activity. It is capped by ``first_seen + max_age`` (JupyterHub's max-age,
    Cloud Workstations' runningTimeout), shortened to ``close + after_close`` once the last
    client detached (Gitpod), and to ``first_seen + never_used`` with no engagement and no work
    at all (an agent working unattended is in use). Ended sessions are final
    (:attr:`IdleState.ENDED`); an agent waiting for the user is never stuck (seed 004: stuck
    is a working agent without progress).
    """
    last = last_counted(v.sources.items(), rules.count, rules.count_untrusted)
    base = idle_since(v.first_seen, last)
    if v.status != _ACTIVE_STATUS:
        ended = _ended(v, now)
        return Evaluation(_ENDED, base, None, False, False, False, ended, ended, ended)
    hibernated = v.sources.get(_HIBERNATE)
    if hibernated is not None and hibernated >= base:  # until it is used again
        why = f"hibernated {_ago(now - hibernated)} ago"
        return Evaluation(_HIBERNATED, base, None, False, False, False, why, why, why)
    holding, hold_ends = _counting_holds(v, rules, now)
    idle_at = base + int(rules.idle_after * NANOS)
    idle = not holding and now >= idle_at
    state = _IDLE if idle else _ACTIVE

    if last is None:
        reason = "no counted activity since first seen"
    else:
        reason = f"last counted activity {_ago(now - base)} ago"
    if v.turn == _WAITING:
        reason = f"waiting for the user since {_clock(v.turn_since or now)}; {reason}"
    deadline: int | None = base + int(rules.hibernate_after * NANOS)
    why_deadline = f"hibernate_after {rules.hibernate_after:g} s"
    if rules.never_used is not None and latest(v.sources.items(), _USE)[1] is None:
        never = v.first_seen + int(rules.never_used * NANOS)
        if deadline is None or never < deadline:
            deadline, why_deadline = never, f"never used; never_used {rules.never_used:g} s"
    closed = v.last_client_closed
    if rules.after_close is not None and closed is not None and closed >= base:
        after = closed + int(rules.after_close * NANOS)
        if deadline is None or after < deadline:
            deadline = after
            why_deadline = f"last client detached; after_close {rules.after_close:g} s"
    if holding:
        deadline = None
        why_deadline = "held by " + ", ".join(sorted({_held(h) for h in holding}))
    if rules.max_age is not None:
        cap = v.first_seen + int(rules.max_age * NANOS)
        if deadline is None or cap <= deadline:
            deadline, why_deadline = cap, f"max_age {rules.max_age:g} s since first seen"
    reason = f"{reason}; {why_deadline}"

    rate, limit = v.output_bytes_per_second, rules.runaway_bytes_per_second
    runaway = rate >= limit
    runaway_reason = f"output {_rate(rate)} over 30 s {'>=' if runaway else '<'} {_size(limit)}"
    tools = [h for h in holding if h.kind == _TOOL] if holding else holding
    stuck, stuck_reason, stuck_at = _stuck(v, rules, now, tools)
    due = deadline is not None and now >= deadline

    alive = v.sources.get(_PROCESS)
    lost_at = None
    if v.process_status == "running" and alive is not None:
        lost_at = alive + int(rules.lost_after * NANOS)
    lost = lost_at is not None and now >= lost_at
    if lost:
        reason = f"{reason}; process lost: no liveness for {_ago(now - (alive or 0))}"

    changes = [*hold_ends, stuck_at or 0, lost_at or 0]
    if not idle:
        changes.append(idle_at)
    if deadline is not None and not due:
        changes.append(deadline)
    if runaway:
        changes.append(now + _RUNAWAY_RECHECK_NS)
    future = [t for t in changes if t > now]
    return Evaluation(
        state, base, deadline, due, runaway, stuck, reason, runaway_reason, stuck_reason,
        tuple(holding), lost, min(future) if future else None,
    )  # fmt: skip


def _held(h: Hold) -> str:
    return f"{h.kind} {h.reason or h.id}"


def _ended(v: EntityView, now: int) -> str:
    ended = v.sources.get(Source.EXIT, 0)
    when = f" {_ago(now - ended)} ago" if ended else ""
    how = f"exited with code {v.exit_code}" if v.exit_code is not None else str(v.status)
    return f"{how}{when}" + (f": {v.result}" if v.result else "")


@dataclass(frozen=True, slots=True)
class Decision:
    """One session or host with its evaluation."""

    view: EntityView
    evaluation: Evaluation


class Decisions(NamedTuple):
    """:func:`decide`'s answer: each list of :class:`Decision` s."""

    hibernate: list[Decision]
    """Due now, earliest deadline first."""
    due_soon: list[Decision]
    """Due within the window asked for, earliest deadline first."""
    held: list[Decision]
    """Held up by a hold that counts under the policy (a lease, a foreground command, a tool
    call ...), longest held first: so a hold that never ends is visible."""
    truncated: bool = False
    """A list had more than the ``limit`` asked for: it holds the first ``limit``."""


ListedKey = tuple[int, str, str]
"""Where an entry sorts in a list of :class:`Decisions`: (deadline in ns, kind, id)."""


class DecisionsBuilder:
    """:func:`decide` one view at a time (so a caller walking an index in deadline order can
    stop early: :meth:`add` says where each view lands).

    Args:
        policy: the idle policy.
        now: ns since the epoch.
        within_ns: ``due_soon`` holds those due within this (ns) of ``now``.
    """

    def __init__(self, policy: Policy, now: int, within_ns: int) -> None:
        self._policy = policy
        self._now = now
        self._within_ns = within_ns
        self._out = Decisions([], [], [])
        # (deadline, kind, id) listed, per list (due now, due soon): the order lists sort in
        self._listed: tuple[list[ListedKey], list[ListedKey]] = ([], [])
        self._earlier = [0, 0]  # per list: listed keys before the walk's position

    def add(self, v: EntityView) -> None:
        """Evaluate ``v`` and file it (its deadline, when listed, is what :meth:`wants`
        compares with). Ended sessions (completed, error) are never listed."""
        if v.status != AgentStatus.ACTIVE:
            return
        now, out = self._now, self._out
        e = self._policy.evaluate(v, now)
        if e.held_by and not e.hibernate:
            out.held.append(Decision(v, e))
        at = e.hibernate_at
        if at is None:
            return
        if e.hibernate:
            out.hibernate.append(Decision(v, e))
        elif at - now <= self._within_ns:
            out.due_soon.append(Decision(v, e))
        else:
            return
        heapq.heappush(self._listed[at > now], (at, v.kind, v.id))

    def wants(self, indexed: ListedKey, soon: bool, limit: int | None) -> bool:
        """Walking an index of ``(deadline, kind, id)`` in order (deadlines in ns; those due
        now from the earliest, or ``soon``: from ``now``), may the entity indexed at
        ``indexed`` still be among its list's first ``limit``? No once ``limit + 1`` entries
        already listed sort before it (the lists' own order: deadline, then kind, then id).

        Correct for an index whose deadlines are never later than the entities' own (each
        candidate is evaluated afresh with :meth:`add`): every entity the walk has not reached
        sorts at or after ``indexed``, so a walk stops inside a tie of deadlines too (a
        fleet's sessions often share one: issue 15). An index whose ties are in another order
        passes ``(deadline, "", "")``: its ties are walked whole."""
        if limit is None:
            return True
        heap, i = self._listed[soon], int(soon)
        while heap and heap[0] < indexed:
            heapq.heappop(heap)
            self._earlier[i] += 1
        return self._earlier[i] <= limit

    def result(self, limit: int | None = None) -> Decisions:
        """The lists in their order (ties by kind, then id: the same answer whatever order the
        views came in), each cut to its first ``limit`` (``None``: whole)."""
        hibernate, due_soon, held, _ = self._out
        hibernate.sort(key=lambda d: (d.evaluation.hibernate_at or 0, d.view.kind, d.view.id))
        due_soon.sort(key=lambda d: (d.evaluation.hibernate_at or 0, d.view.kind, d.view.id))
        held.sort(
            key=lambda d: (min(h.since for h in d.evaluation.held_by), d.view.kind, d.view.id)
        )
        if limit is None or max(len(hibernate), len(due_soon), len(held)) <= limit:
            return Decisions(hibernate, due_soon, held)
        return Decisions(hibernate[:limit], due_soon[:limit], held[:limit], truncated=True)


def decide(
    views: Iterable[EntityView],
    policy: Policy,
    now: int,
    within_ns: int,
    limit: int | None = None,
) -> Decisions:
    """Split ``views`` into those to hibernate now, those due within ``within_ns`` (ns) and
    those held up, each list cut to its first ``limit`` (:class:`DecisionsBuilder`)."""
    builder = DecisionsBuilder(policy, now, within_ns)
    for v in views:
        builder.add(v)
    return builder.result(limit)
