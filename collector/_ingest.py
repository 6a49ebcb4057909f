"""Translate OTLP export requests into :class:`~lastactive.collector._state.ActivityState` calls.

One walk per signal over the parsed protobuf messages; both receivers (gRPC and HTTP, protobuf
and JSON) delegate here. Our own names (``docs/conventions.md``) get their exact meaning; any
other telemetry that carries a session, agent or host identity counts as liveness
(``telemetry``); telemetry with no identity is not about anything we track and is skipped.

A data point, log record or span that breaks our conventions (an unknown ``lastactive.source``,
a timestamp gauge that is not a finite positive number ...) is rejected through OTLP partial
success while the rest of the request is kept.

Each signal is applied in slices of :data:`INGEST_SLICE` items (``*_sliced``: a generator that
yields between slices), so a serving edge can let the event loop answer queries between them
(issue 15: a request applied in one piece held GETs up for milliseconds); ``metrics``,
``logs`` and ``traces`` apply a whole request at once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality, DataPointFlags

from lastactive.collector._auth import ANONYMOUS, Principal, Scope
from lastactive.collector._clocks import Key, ReporterClock, ReporterClocks
from lastactive.collector._interned import Interned
from lastactive.collector._record import (
    INT32_MAX,
    INT64_MAX,
    MAX_ID_CHARS,
    MAX_RESULT_CHARS,
    MAX_TASK_CHARS,
)
from lastactive.collector._sliced import Sliced, whole
from lastactive.collector._state import (
    NANOS,
    ActivityState,
    Entity,
    EntityLimitError,
    Identity,
    Kind,
)
from lastactive.conventions import (
    AGENT_EVENTS,
    ATTR_AGENT_TURN,
    ATTR_GEN_AI_AGENT_ID,
    ATTR_GEN_AI_AGENT_NAME,
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_REASON,
    ATTR_HOLD_UNTIL,
    ATTR_HOST_ID,
    ATTR_HOST_NAME,
    ATTR_NETWORK_IO_DIRECTION,
    ATTR_PROCESS_EXIT_CODE,
    ATTR_PROCESS_PID,
    ATTR_RESULT,
    ATTR_SERVICE_INSTANCE_ID,
    ATTR_SERVICE_NAME,
    ATTR_SESSION_ID,
    ATTR_SOURCE,
    ATTR_TASK,
    CLAUDE_CODE_ACTIVE_TIME,
    CLAUDE_CODE_ACTIVE_TIME_TYPE,
    CLAUDE_CODE_ACTIVE_TIME_USER,
    CLAUDE_CODE_EVENTS,
    CLAUDE_CODE_INTERACTION_SPAN,
    CLAUDE_CODE_METRICS,
    CLAUDE_CODE_PREFIX,
    DIRECTION_RECEIVE,
    DIRECTION_TRANSMIT,
    EVENT_ACTIVITY,
    EVENT_HOLD,
    EVENT_PROCESS_EXIT,
    METRIC_IO,
    METRIC_SOURCE_LAST_TIME,
    SOURCES,
    AgentTurn,
    HoldKind,
    Source,
)

_KNOWN_SOURCES: Final = {sys.intern(str(s)): sys.intern(str(s)) for s in SOURCES}
"""Each known source's name -> the one string every entity keeps for it (not the request's)."""
_HOLD_KINDS = frozenset(str(k) for k in HoldKind)
_TURNS = frozenset({str(AgentTurn.WORKING), str(AgentTurn.WAITING)})
_HIBERNATE: Final = str(Source.HIBERNATE)
_CUMULATIVE = AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
_NO_VALUE = DataPointFlags.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK
_EVENT_NAME_ATTR = "event.name"  # older SDKs put the event name in an attribute

Attrs = dict[str, Any]

_IDENTITY_ATTRS: Final = frozenset(
    {ATTR_SESSION_ID, ATTR_GEN_AI_AGENT_ID, ATTR_GEN_AI_AGENT_NAME, ATTR_HOST_ID, ATTR_HOST_NAME}
)
"""Point attributes that name what a point is about: a counter stream's key holds the ids of
the entities they resolved to (the entities' own strings) instead."""
_shared: Final = Interned[Any](16_384)
"""The one copy of a scope or metric name, or of a counter's other attributes, that every
counter stream's key keeps (kept per stream, a request's cost ~1 KB a session: issue 15)."""


class RejectedError(ValueError):
    """One data point, log record or span breaks our conventions; the message says how."""


class ForbiddenItemError(RejectedError):
    """One data point, log record or span is about something its sender's credential may not
    report about (:mod:`lastactive.collector._auth`)."""


@dataclass(slots=True)
class Outcome:
    """How one export request went: items accepted into state, rejected, and the first
    rejection's message (for the partial-success response)."""

    accepted: int = 0
    rejected: int = 0
    error_message: str = ""
    forbidden: int = 0
    """Of the rejected: refused by the sender's credential's bindings."""

    def reject(self, exc: RejectedError) -> None:
        self.rejected += 1
        if isinstance(exc, ForbiddenItemError):
            self.forbidden += 1
        if not self.error_message:
            self.error_message = str(exc)


INGEST_SLICE: Final = 64
"""Data points, log records or spans applied per slice (~5-20 us each: a slice holds the event
loop well under the 2 ms a GET may take, issue 15)."""

Slices = Sliced[Outcome]
"""An export being applied (:mod:`~lastactive.collector._sliced`): ``next`` applies its next
slice; it returns its :class:`Outcome` once the whole request is applied."""


def _value(v: Any) -> Any:
    sv = v.string_value  # the common case, without asking which field is set
    if sv:
        return sv
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    out = getattr(v, kind)
    if kind in ("array_value", "kvlist_value"):
        return str(out)  # not used by any rule; kept hashable for stream keys
    return out


def attrs_of(kvs: Iterable[Any]) -> Attrs:
    """OTLP ``KeyValue`` list -> dict of plain Python values."""
    # A string (nearly every attribute) without a call or asking which field is set.
    return {kv.key: kv.value.string_value or _value(kv.value) for kv in kvs}


def _identity(attrs: Attrs, base: Identity) -> Identity:
    """Point/record attributes override the resource's identity (semconv names).

    Raises:
        RejectedError: an id :func:`_checked` refuses.
    """
    get = attrs.get
    return _checked(
        Identity(  # by position (a resolver miss per session and request: issue 15)
            _str(get(ATTR_SESSION_ID)) or base.session_id,
            _str(get(ATTR_GEN_AI_AGENT_ID) or get(ATTR_GEN_AI_AGENT_NAME)) or base.agent_id,
            _str(get(ATTR_HOST_ID) or get(ATTR_HOST_NAME)) or base.host_id,
            _cut(base.service_name, MAX_ID_CHARS),  # service_name
        )
    )


def _checked(ident: Identity) -> Identity:
    """``ident``, its ids fit for every store.

    Raises:
        RejectedError: an id longer than :data:`MAX_ID_CHARS`, or holding a NUL character
            (PostgreSQL text cannot hold one; an id is not changed behind a client's back).
    """
    session_id, agent_id, host_id, _ = ident
    if session_id is not None:
        _check_id(session_id, "a session id")
    if agent_id is not None:
        _check_id(agent_id, "an agent id")
    if host_id is not None:
        _check_id(host_id, "a host id")
    return ident


def _check_id(v: str, what: str) -> None:
    if len(v) > MAX_ID_CHARS:
        raise RejectedError(f"{what} of {len(v)} characters is longer than {MAX_ID_CHARS}")
    if "\x00" in v:
        raise RejectedError(f"{what} {v!r} holds a NUL character (U+0000)")


def _bind(ident: Identity, principal: Principal, state: ActivityState) -> Identity:
    """``ident`` as ``principal`` may report it: telemetry naming no host is about its bound
    host (:mod:`lastactive.collector._auth`).

    Raises:
        ForbiddenItemError: ``ident`` names another host, a session another host owns, a
            session id outside the principal's prefixes or an agent not among its agents.
    """
    who = f"credential {principal.name!r}"
    bound_host = principal.host
    sid = ident.session_id
    if bound_host is not None:
        if ident.host_id is None:
            ident = ident._replace(host_id=bound_host)
        elif ident.host_id != bound_host:
            raise ForbiddenItemError(
                f"{who} reports about host {bound_host!r} only, not {ident.host_id!r}"
            )
        if sid is not None:
            owner = state.host_of(Kind.SESSION, sid)
            if owner is not None and owner != bound_host:
                raise ForbiddenItemError(
                    f"{who} may not report about session {sid!r} of another host"
                )
    if (
        principal.session_prefixes
        and sid is not None
        and not sid.startswith(principal.session_prefixes)
    ):
        raise ForbiddenItemError(
            f"{who} reports about sessions {', '.join(principal.session_prefixes)}* only, "
            f"not {sid!r}"
        )
    if principal.agents and ident.agent_id is not None and ident.agent_id not in principal.agents:
        raise ForbiddenItemError(f"{who} may not report about agent {ident.agent_id!r}")
    return ident


def _cut(text: str | None, limit: int) -> str | None:
    """Free text as state keeps it: ``text`` cut to ``limit`` characters (the last one "…"),
    a NUL character replaced by U+FFFD (PostgreSQL text cannot hold one)."""
    if text is None:
        return None
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if len(text) <= limit:
        return text
    return text[: limit - 1] + "\u2026"


_Ids = tuple[str | None, ...]
_About = tuple[list[Entity], _Ids]


class _Resolver:
    """Attributes -> entities for one request, cached by the raw identity values, so a
    request of 1000 sessions resolves 1000 identities, not one per data point.

    :meth:`resource` is called per resource: the resource attributes the policy selects on
    (:attr:`~lastactive.collector._state.ActivityState.attribute_keys`) are kept on the most
    specific entity the telemetry names (its session, else its agent, else its host), so a host
    does not take on the attributes of whichever of its sessions reported last.
    """

    __slots__ = (
        "_base", "_cache", "_caches", "_described", "_offset", "_principal", "_removals", "_state",
    )  # fmt: skip

    def __init__(self, state: ActivityState, principal: Principal) -> None:
        self._state = state
        self._principal = principal if principal.bound else None
        self._caches: dict[tuple[object, ...], dict[tuple[object, ...], _About]] = {}
        """(base identity, described attributes) -> the raw identity values -> entities."""
        self._base: Identity | None = None
        self._cache: dict[tuple[object, ...], _About] = {}
        """The current resource's entry of :attr:`_caches` (its base is :attr:`_base`)."""
        self._described: tuple[tuple[str, str], ...] = ()
        self._offset = 0
        self._removals = state.removals

    def resource(self, rattrs: Attrs, base: Identity, clock: ReporterClock | None) -> None:
        """Start a resource whose attributes are ``rattrs`` (its identity ``base``), sent by a
        reporter whose clock is ``clock`` (its offset is shown on the entities it reports
        about)."""
        self._offset = 0 if clock is None else clock.offset
        keys = self._state.attribute_keys
        if keys:
            self._described = tuple(
                (k, _cut(str(v), MAX_RESULT_CHARS) or "")
                for k in sorted(keys)
                if (v := rattrs.get(k)) is not None
            )
        self._base = base
        self._cache = self._caches.setdefault((base, self._described), {})

    def resume(self) -> None:
        """Between slices of a request: forget what was resolved if the retention purge or an
        eviction removed an entity meanwhile (the cache may hold it); else keep it (a
        request's points about one session need not be adjacent)."""
        removals = self._state.removals
        if removals != self._removals:
            self._removals = removals
            self._caches.clear()
            self._cache = self._caches.setdefault((self._base, self._described), {})

    def __call__(self, attrs: Attrs, base: Identity, t: int) -> list[Entity]:
        """The entities ``attrs`` (over ``base``) name; empty when they name none."""
        return self.about(attrs, base, t)[0]

    def about(self, attrs: Attrs, base: Identity, t: int) -> _About:
        """The entities ``attrs`` (over ``base``) name, and their ids by kind (session,
        agent, host: ``None`` for a kind not named; the entities' own strings)."""
        key = (
            attrs.get(ATTR_SESSION_ID),
            attrs.get(ATTR_GEN_AI_AGENT_ID),
            attrs.get(ATTR_GEN_AI_AGENT_NAME),
            attrs.get(ATTR_HOST_ID),
            attrs.get(ATTR_HOST_NAME),
        )
        described = self._described
        cache = (
            self._cache if base is self._base else self._caches.setdefault((base, described), {})
        )
        about = cache.get(key)
        if about is None:
            ident = _identity(attrs, base)
            if self._principal is not None:
                ident = _bind(ident, self._principal, self._state)
            try:
                ents = self._state.resolve(ident, t) if ident.known else []
            except EntityLimitError as exc:
                raise RejectedError(str(exc)) from None
            about = cache[key] = (ents, _ids(ident, ents))
            for e in ents:
                e.clock_offset = self._offset
            if described and ents:  # the most specific entity named: session, agent, host
                self._state.describe(ents[:1], described)
        return about


def _ids(ident: Identity, ents: list[Entity]) -> _Ids:
    """The ids of ``ents`` (:meth:`~lastactive.collector._state.ActivityState.resolve`'s
    answer to ``ident``) by kind: session, agent, host (``None``: not named)."""
    session_id, agent_id, host_id, _ = ident
    i = 0
    session = agent = host = None
    if session_id:
        session, i = ents[0].id, 1
    if agent_id:
        agent, i = ents[i].id, i + 1
    if host_id:
        host = ents[i].id
    return session, agent, host


def _exact_first(item: tuple[str, Any]) -> bool:
    return bool(item[1].name != METRIC_SOURCE_LAST_TIME)


def _fixed(state: ActivityState, t: int, off: int, now: int) -> int:
    """A reporter's timestamp ``t`` corrected by its clock's ``off`` and clamped (unset: now)."""
    return state.clamp(t + off if t > 0 else 0, now)


def _collected(rm: Any) -> int:
    """A resource's latest collection time (its reporter's now): each metric's first point."""
    latest = 0
    for sm in rm.scope_metrics:
        for metric in sm.metrics:
            kind = metric.WhichOneof("data")
            if kind is not None:
                points = getattr(metric, kind).data_points
                if points and points[0].time_unix_nano > latest:
                    latest = points[0].time_unix_nano
    return latest


def _observed(rl: Any) -> int:
    """A resource's latest log observation time (its reporter's now when it emitted them)."""
    return max(
        (lr.observed_time_unix_nano or lr.time_unix_nano for sl in rl.scope_logs
         for lr in sl.log_records),
        default=0,
    )  # fmt: skip


def _span_ended(rs: Any) -> int:
    """A resource's latest span end (at most its reporter's now when it exported them)."""
    return max((span.end_time_unix_nano for ss in rs.scope_spans for span in ss.spans), default=0)


def _str(v: Any) -> str | None:
    return None if v is None or v == "" else str(v)


def _source(attrs: Attrs, act: bool) -> str:
    """The point's ``lastactive.source``; ``act``: its sender may record hibernation.

    Raises:
        RejectedError: not a known source. ForbiddenItemError: ``hibernate`` without ``act``.
    """
    src = attrs.get(ATTR_SOURCE)
    known = _KNOWN_SOURCES.get(src) if isinstance(src, str) else None
    if known is None:
        raise RejectedError(
            f"{ATTR_SOURCE}={src!r} is not a known source; expected one of "
            f"{', '.join(sorted(_KNOWN_SOURCES))}"
        )
    if src == _HIBERNATE and not act:
        raise ForbiddenItemError(f"recording {ATTR_SOURCE}={src} needs a credential with scope act")
    return known


def _turn(attrs: Attrs) -> AgentTurn:
    turn = attrs.get(ATTR_AGENT_TURN)
    if turn not in _TURNS:
        raise RejectedError(
            f"{ATTR_AGENT_TURN}={turn!r} is not a turn; expected {AgentTurn.WORKING} or "
            f"{AgentTurn.WAITING}"
        )
    return AgentTurn(turn)


def _int_attr(attrs: Attrs, key: str, required: bool, lo: int, hi: int) -> int | None:
    """The integer attribute ``key``, in ``[lo, hi]``; ``None`` when absent and not required.
    An integral double (``3.0``) is that integer.

    Raises:
        RejectedError: absent though required, not an integer, or out of range.
    """
    v = attrs.get(key)
    if v is None and not required:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # the OpenTelemetry Collector's JSON turns integers into doubles: 3 -> 3.0
    if isinstance(v, bool) or not isinstance(v, int):
        raise RejectedError(f"{key} must be an integer attribute, got {v!r}")
    if not lo <= v <= hi:
        raise RejectedError(f"{key}={v} is out of range [{lo}, {hi}]")
    return v


def _pid(attrs: Attrs) -> int | None:
    return _int_attr(attrs, ATTR_PROCESS_PID, False, 0, INT64_MAX)


_MAX_SECONDS: Final = INT64_MAX // NANOS
"""The latest time in seconds since the epoch a client may send (int64 ns: the year 2262)."""


_COUNTERS: Final = frozenset({METRIC_IO, *CLAUDE_CODE_METRICS})
"""Counters whose rises are activity without a ``lastactive.source`` on their points."""

_EVENTS: Final = frozenset(
    {EVENT_ACTIVITY, EVENT_PROCESS_EXIT, EVENT_HOLD, *AGENT_EVENTS, *CLAUDE_CODE_EVENTS}
)
"""Event names with a meaning here; any other event with an identity is liveness."""


def _foreign_event(name: str, lr: Any) -> str:
    """The name of another program's event whose name is not where OpenTelemetry puts it:
    Claude Code's ``claude_code.<name>`` is the body, its ``event.name`` attribute ``<name>``."""
    body = lr.body.string_value
    if body in CLAUDE_CODE_EVENTS:
        return str(body)
    prefixed = CLAUDE_CODE_PREFIX + name
    return prefixed if prefixed in CLAUDE_CODE_EVENTS else name


def _span_source(name: str, attrs: Attrs, act: bool) -> str:
    """What a span's end counts as: its ``lastactive.source``; Claude Code's spans are the
    agent's work; any other span is liveness.

    Raises:
        RejectedError: an unknown ``lastactive.source``.
    """
    if ATTR_SOURCE in attrs:
        return _source(attrs, act)
    if name.startswith(CLAUDE_CODE_PREFIX):
        return Source.AGENT
    return Source.TELEMETRY


def _gauge_point(pattrs: Attrs, p: Any, act: bool) -> tuple[str, float]:
    """A ``lastactive.source.last_time`` point's source and value (seconds since the epoch).

    Raises:
        RejectedError: an unknown source, or a value that is no time after the epoch.
    """
    src = _source(pattrs, act)
    v = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
    if not (isinstance(v, int | float) and 0 < v <= _MAX_SECONDS):
        raise RejectedError(
            f"{METRIC_SOURCE_LAST_TIME} must be a positive number of seconds since the "
            f"Unix epoch (at most {_MAX_SECONDS}), got {v!r}"
        )
    return src, v


def _sum_point(name: str, pattrs: Attrs, p: Any, act: bool) -> tuple[str, bool | None, float]:
    """A counter point's source, direction (``None`` unless ``name`` is
    ``lastactive.io``, else whether bytes were received) and value.

    Raises:
        RejectedError: no direction on ``lastactive.io``, an unknown source, a value outside
            ``[0, INT64_MAX]`` or a time past int64 nanoseconds.
    """
    io: bool | None = None
    if name == METRIC_IO:
        direction = pattrs.get(ATTR_NETWORK_IO_DIRECTION)
        if direction not in (DIRECTION_RECEIVE, DIRECTION_TRANSMIT):
            raise RejectedError(
                f"{METRIC_IO} needs {ATTR_NETWORK_IO_DIRECTION}=receive|transmit, got {direction!r}"
            )
        io = direction == DIRECTION_RECEIVE
        # Bytes in are input (engagement), bytes out output (work), unless the reporter
        # classified them itself and says what they are.
        if ATTR_SOURCE in pattrs:
            src = _source(pattrs, act)
        else:
            src = Source.INPUT if io else Source.OUTPUT
    elif ATTR_SOURCE in pattrs:
        src = _source(pattrs, act)
    elif (
        name == CLAUDE_CODE_ACTIVE_TIME
        and pattrs.get(CLAUDE_CODE_ACTIVE_TIME_TYPE) == CLAUDE_CODE_ACTIVE_TIME_USER
    ):
        src = Source.PROMPT  # the user's keyboard time in Claude Code: engagement
    else:
        src = CLAUDE_CODE_METRICS[name]
    v = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
    if not 0 <= v <= INT64_MAX:  # also NaN
        raise RejectedError(f"{name}: a counter value must be in [0, {INT64_MAX}], got {v!r}")
    if p.start_time_unix_nano > INT64_MAX or p.time_unix_nano > INT64_MAX:
        raise RejectedError(
            f"{name}: start_time_unix_nano {p.start_time_unix_nano} or time_unix_nano "
            f"{p.time_unix_nano} is past the year 2262 (int64 ns)"
        )
    return src, io, v


class Ingest:
    """Applies OTLP requests to ``state``. ``clock`` returns ns since the epoch (receive time).

    Every reporter's timestamps are corrected by its estimated clock offset
    (:mod:`lastactive.collector._clocks`) before they reach ``state``: per resource, the latest
    "now" it stamped (a data point's ``time_unix_nano``, a log record's
    ``observed_time_unix_nano``, a span's end) is one sample. The edges count requests and their
    outcome (``lastactive.collector._stats``); this stays pure.
    """

    def __init__(
        self,
        state: ActivityState,
        clock: Callable[[], int] = time.time_ns,
        clocks: ReporterClocks | None = None,
    ) -> None:
        self.state = state
        self.clock = clock
        self.clocks = clocks if clocks is not None else ReporterClocks(state.max_skew_ns)

    def _reporter(self, rattrs: Attrs, reported: int, now: int) -> tuple[Key, ReporterClock | None]:
        """The resource's reporter (its clock's key: one tuple for as long as the clock is
        known) and its clock."""
        key = (
            _str(rattrs.get(ATTR_SERVICE_NAME)),
            _str(rattrs.get(ATTR_SERVICE_INSTANCE_ID)),
            _str(rattrs.get(ATTR_HOST_ID) or rattrs.get(ATTR_HOST_NAME)),
            _str(rattrs.get(ATTR_SESSION_ID)),
        )
        clock = self.clocks.observe(key, reported, now)
        return (key if clock is None else clock.key), clock

    def _resource(self, resource: Any) -> tuple[Attrs, Identity]:
        attrs = attrs_of(resource.attributes)
        ident = Identity(
            session_id=_str(attrs.get(ATTR_SESSION_ID)),
            agent_id=_str(attrs.get(ATTR_GEN_AI_AGENT_ID) or attrs.get(ATTR_GEN_AI_AGENT_NAME)),
            host_id=_str(attrs.get(ATTR_HOST_ID) or attrs.get(ATTR_HOST_NAME)),
            service_name=_str(attrs.get(ATTR_SERVICE_NAME)),
        )
        return attrs, ident

    # --- metrics ---------------------------------------------------------------------------

    def metrics(
        self, req: ExportMetricsServiceRequest, principal: Principal = ANONYMOUS
    ) -> Outcome:
        """Apply every data point of ``req``, sent by ``principal`` (what it may report about:
        :func:`_bind`); returns counts for the partial-success reply."""
        return whole(self.metrics_sliced(req, principal))

    def metrics_sliced(
        self, req: ExportMetricsServiceRequest, principal: Principal = ANONYMOUS
    ) -> Slices:
        """:meth:`metrics` in slices of :data:`INGEST_SLICE` data points."""
        now = self.clock()
        left = INGEST_SLICE
        state = self.state
        out = Outcome()
        resolve = _Resolver(state, principal)
        act = Scope.ACT in principal.scopes
        for rm in req.resource_metrics:
            rattrs, base = self._resource(rm.resource)
            reporter, clock = self._reporter(rattrs, _collected(rm), now)
            off = self.clocks.correction(clock)
            limit = now + state.max_skew_ns
            floor = max(off, 0)  # unset (0), or corrected to before the epoch
            resolve.resource(rattrs, base, clock)
            # Exact times first (the timestamp gauge), so a counter's rise in the same export
            # is known to be explained by them, whatever order the SDK put the metrics in.
            ordered = [(sm.scope.name, m) for sm in rm.scope_metrics for m in sm.metrics]
            ordered.sort(key=_exact_first)
            for scope_name, metric in ordered:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                is_sum = kind == "sum"
                cumulative = is_sum and data.aggregation_temporality == _CUMULATIVE
                name = _shared(metric.name)
                scope = _shared(scope_name)
                for p in data.data_points:
                    if not left:
                        yield
                        left = INGEST_SLICE
                        resolve.resume()
                    left -= 1
                    if p.flags & _NO_VALUE:  # staleness marker: says nothing new
                        continue
                    pattrs = attrs_of(p.attributes)
                    t = p.time_unix_nano + off  # inline _fixed: the per-point path
                    if t <= floor or t > limit:
                        t = now
                    try:  # each point checked before its identity resolves: no phantoms
                        if name == METRIC_SOURCE_LAST_TIME and kind == "gauge":
                            src, v = _gauge_point(pattrs, p, act)
                            ents = resolve(pattrs, base, t)
                            if not ents:
                                continue
                            state.last_time(ents, reporter, v, src, t, off, now)
                        elif is_sum and (name in _COUNTERS or ATTR_SOURCE in pattrs):
                            src, io, v = _sum_point(name, pattrs, p, act)
                            ents, ids = resolve.about(pattrs, base, t)
                            if not ents:
                                continue
                            # The stream: this reporter's counter about these entities with
                            # these other attributes (its parts shared, not the request's).
                            other = [i for i in pattrs.items() if i[0] not in _IDENTITY_ATTRS]
                            if len(other) > 1:
                                other.sort()
                            key = (reporter, scope, name, _shared(tuple(other)), *ids)
                            self._sum(ents, key, src, io, v, p, t, off, cumulative)
                        else:
                            ents = resolve(pattrs, base, t)
                            if not ents:
                                continue
                            state.activity(ents, Source.TELEMETRY, t)
                    except RejectedError as exc:
                        out.reject(exc)
                        continue
                    out.accepted += 1
        return out

    def _sum(
        self,
        ents: list[Entity],
        key: tuple[object, ...],
        src: str,
        io: bool | None,
        v: float,
        p: Any,
        t: int,
        off: int,
        cumulative: bool,
    ) -> None:
        """A checked counter point of the stream ``key`` counting ``src``; ``io``: ``None`` for
        a counter of activities, else whether it counts bytes received."""
        # Staleness on the raw time, before correction (the estimate moves; the stream not).
        start = p.start_time_unix_nano
        raw_t = p.time_unix_nano or t
        counted = self.state.counter(key, start, raw_t, v, cumulative, began=start + off)
        if counted is None:  # stale or replayed: changes nothing, not even liveness
            return
        rose, previous = counted
        state = self.state
        if io is not None and cumulative and state.additive_io:
            state.rise_point(key, ents, io, int(rose))
        if rose > 0:
            if io is not None:
                state.io(ents, io, int(rose), t, cumulative)
                # The bytes moved after the stream's previous point (the first point: at some
                # unknown time; the SDK starts an observable counter at its first collection).
                # A reporter that also reports the source's exact time (lastactive's own,
                # through the gauge, applied first) already said when: the point's later
                # collection time must not move it.
                lower = previous + off if previous else 0
                if (ents[0].source_time(src) or 0) > lower:
                    state.seen(ents, t)
                    return
            state.activity(ents, src, t)  # and liveness
        else:
            state.seen(ents, t)

    # --- logs and events -------------------------------------------------------------------

    def logs(self, req: ExportLogsServiceRequest, principal: Principal = ANONYMOUS) -> Outcome:
        """Apply every log record of ``req``, sent by ``principal``; events (``event_name``)
        per our conventions. A principal with scope ``act`` but not ``report`` may send
        hibernation records only."""
        return whole(self.logs_sliced(req, principal))

    def logs_sliced(
        self, req: ExportLogsServiceRequest, principal: Principal = ANONYMOUS
    ) -> Slices:
        """:meth:`logs` in slices of :data:`INGEST_SLICE` log records."""
        now = self.clock()
        left = INGEST_SLICE
        out = Outcome()
        resolve = _Resolver(self.state, principal)
        act = Scope.ACT in principal.scopes
        hibernation_only = Scope.REPORT not in principal.scopes
        for rl in req.resource_logs:
            rattrs, base = self._resource(rl.resource)
            clock = self._reporter(rattrs, _observed(rl), now)[1]
            off = self.clocks.correction(clock)
            resolve.resource(rattrs, base, clock)
            for sl in rl.scope_logs:
                for lr in sl.log_records:
                    if not left:
                        yield
                        left = INGEST_SLICE
                        resolve.resume()
                    left -= 1
                    attrs = attrs_of(lr.attributes)
                    t = _fixed(
                        self.state, lr.time_unix_nano or lr.observed_time_unix_nano, off, now
                    )
                    name = lr.event_name or attrs.get(_EVENT_NAME_ATTR) or ""
                    if name not in _EVENTS:
                        name = _foreign_event(str(name), lr)
                    try:
                        if hibernation_only and (
                            name != EVENT_ACTIVITY or attrs.get(ATTR_SOURCE) != _HIBERNATE
                        ):
                            raise ForbiddenItemError(
                                f"credential {principal.name!r} (scope act) records "
                                f"{EVENT_ACTIVITY} {ATTR_SOURCE}={_HIBERNATE} only"
                            )
                        apply = self._event(str(name), attrs, off, act)
                        ents = resolve(attrs, base, t)
                        if not ents:
                            continue
                        apply(ents, t)
                    except RejectedError as exc:
                        out.reject(exc)
                        continue
                    out.accepted += 1
        return out

    def _event(
        self, name: str, attrs: Attrs, off: int, act: bool
    ) -> Callable[[list[Entity], int], None]:
        """One log record or span event, checked: how to apply it to its entities at its time
        (ns). Checked before its identity is resolved, so a rejected record creates nothing.

        Raises:
            RejectedError: a value that breaks our conventions (the message says which).
        """
        state = self.state
        turn = _turn(attrs) if ATTR_AGENT_TURN in attrs else None
        if name in CLAUDE_CODE_EVENTS:
            claude_source, claude_turn = CLAUDE_CODE_EVENTS[name]

            def claude(ents: list[Entity], t: int) -> None:
                state.activity(ents, claude_source, t)
                if claude_turn is not None:
                    state.turn(ents, claude_turn, t)

            return claude
        if name in AGENT_EVENTS:
            status, source = AGENT_EVENTS[name]
            task, result = attrs.get(ATTR_TASK), attrs.get(ATTR_RESULT)
            task = None if task is None else _cut(str(task), MAX_TASK_CHARS)
            result = None if result is None else _cut(str(result), MAX_RESULT_CHARS)

            def agent(ents: list[Entity], t: int) -> None:
                state.agent_event(
                    ents, status, source, t, task=task, result=result,
                    turn=turn or AgentTurn.WORKING,
                )  # fmt: skip

            return agent
        apply: Callable[[list[Entity], int], None]
        if name == EVENT_ACTIVITY:
            src = _source(attrs, act)
            pid = _pid(attrs)

            def apply(ents: list[Entity], t: int) -> None:
                state.activity(ents, src, t)
                if pid is not None:
                    state.process(ents, pid, None)

        elif name == EVENT_PROCESS_EXIT:
            code = _int_attr(attrs, ATTR_PROCESS_EXIT_CODE, True, -INT32_MAX - 1, INT32_MAX)
            pid = _pid(attrs)

            def apply(ents: list[Entity], t: int) -> None:
                state.activity(ents, Source.EXIT, t)
                state.process(ents, pid, code)
                state.release_holds(ents, t)

        elif name == EVENT_HOLD:
            kind = attrs.get(ATTR_HOLD)
            if kind not in _HOLD_KINDS:
                raise RejectedError(
                    f"{ATTR_HOLD}={kind!r} is not a hold kind; expected one of "
                    f"{', '.join(sorted(_HOLD_KINDS))}"
                )
            hold_id = _str(attrs.get(ATTR_HOLD_ID))
            until = attrs.get(ATTR_HOLD_UNTIL)
            if hold_id is None or isinstance(until, bool) or not isinstance(until, int | float):
                raise RejectedError(
                    f"{EVENT_HOLD} needs {ATTR_HOLD_ID} (string) and {ATTR_HOLD_UNTIL} (seconds "
                    f"since the epoch, 0 = until released), got {hold_id!r}, {until!r}"
                )
            if not 0 <= until <= _MAX_SECONDS:  # also NaN
                raise RejectedError(
                    f"{ATTR_HOLD_UNTIL} must be in [0, {_MAX_SECONDS}] seconds since the epoch "
                    f"(0 = until released), got {until!r}"
                )
            _check_id(hold_id, ATTR_HOLD_ID)
            reason = _cut(_str(attrs.get(ATTR_HOLD_REASON)), MAX_RESULT_CHARS)
            # Corrected for the reporter's clock; one that ends before the epoch has ended.
            until_ns = min(max(int(until * NANOS) + off, 1), INT64_MAX) if until else 0

            def apply(ents: list[Entity], t: int) -> None:
                state.hold(ents, str(kind), hold_id, until_ns, t, reason)

        else:

            def apply(ents: list[Entity], t: int) -> None:
                state.activity(ents, Source.TELEMETRY, t)

        if turn is None:
            return apply

        def with_turn(ents: list[Entity], t: int) -> None:
            apply(ents, t)
            state.turn(ents, turn, t)

        return with_turn

    def agent_webhook(
        self,
        session_id: str,
        agent: str | None,
        event_name: str,
        task: str | None,
        result: str | None,
        *,
        host_id: str | None = None,
        turn: AgentTurn | None = None,
        principal: Principal = ANONYMOUS,
    ) -> str:
        """One seed 004 webhook call (``POST /v1/agent-events``), at the receive time, about
        a session (of ``agent``, on ``host_id``, when given); ``turn`` overrides the event's
        (working for spawn and progress).

        Returns:
            the session's host id as recorded ("" for none): a bound ``principal``'s host.
        Raises:
            KeyError: ``event_name`` is not an agent lifecycle event.
            RejectedError: an id :func:`_checked` refuses.
            EntityLimitError: the session would be new beyond the state's ``max_entities``.
            ForbiddenItemError: ``principal`` may not report about this session (``_bind``).
        """
        status, source = AGENT_EVENTS[event_name]
        t = self.clock()
        ident = _checked(Identity(session_id, agent, host_id, service_name="agent-webhook"))
        if principal.bound:
            ident = _bind(ident, principal, self.state)
        ents = self.state.resolve(ident, t)
        task, result = _cut(task, MAX_TASK_CHARS), _cut(result, MAX_RESULT_CHARS)
        self.state.agent_event(
            ents, status, source, t, task, result, turn=turn or AgentTurn.WORKING
        )
        return ident.host_id or ""

    # --- traces ----------------------------------------------------------------------------

    def traces(self, req: ExportTraceServiceRequest, principal: Principal = ANONYMOUS) -> Outcome:
        """Apply every span of ``req``, sent by ``principal``: a span with ``lastactive.source``
        is that activity at its end; span events are events; any other span with an identity
        is liveness."""
        return whole(self.traces_sliced(req, principal))

    def traces_sliced(
        self, req: ExportTraceServiceRequest, principal: Principal = ANONYMOUS
    ) -> Slices:
        """:meth:`traces` in slices of :data:`INGEST_SLICE` spans."""
        now = self.clock()
        left = INGEST_SLICE
        out = Outcome()
        resolve = _Resolver(self.state, principal)
        act = Scope.ACT in principal.scopes
        for rs in req.resource_spans:
            rattrs, base = self._resource(rs.resource)
            clock = self._reporter(rattrs, _span_ended(rs), now)[1]
            off = self.clocks.correction(clock)
            resolve.resource(rattrs, base, clock)
            for ss in rs.scope_spans:
                for span in ss.spans:
                    if not left:
                        yield
                        left = INGEST_SLICE
                        resolve.resume()
                    left -= 1
                    attrs = attrs_of(span.attributes)
                    t = _fixed(
                        self.state, span.end_time_unix_nano or span.start_time_unix_nano, off, now
                    )
                    try:
                        src = _span_source(span.name, attrs, act)
                        events = [
                            (attrs_of(ev.attributes), ev.time_unix_nano, ev.name)
                            for ev in span.events
                        ]
                        applies = [self._event(n, ea, off, act) for ea, _, n in events]
                        ents = resolve(attrs, base, t)
                        if not ents:
                            continue
                        span_ident = _identity(attrs, base)
                        self.state.activity(ents, src, t)
                        if span.name == CLAUDE_CODE_INTERACTION_SPAN:  # the answer is given
                            self.state.turn(ents, AgentTurn.WAITING, t)
                        for (eattrs, et_raw, _), apply in zip(events, applies, strict=True):
                            et = _fixed(self.state, et_raw, off, now)
                            apply(resolve(eattrs, span_ident, et), et)
                    except RejectedError as exc:
                        out.reject(exc)
                        continue
                    out.accepted += 1
        return out
