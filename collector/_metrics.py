"""The collector's own metrics, Prometheus exposition at ``GET /metrics``.

A custom collector reads plain fields of the core at scrape time (the hot paths only add to
ints), so ingest never pays for metrics. Names follow Prometheus conventions: ``_total`` on
counters, units in the name (``_seconds``, ``_bytes_per_second``).

Cardinality: fleet series cover every session (by state, by host); per-session series
(``lastactive_session_*``) exist only for the sessions worth looking at: runaway, stuck, and the
``top`` busiest by output bytes/s, so 100,000 sessions stay a few dozen series.

Replicas on one PostgreSQL store (:mod:`lastactive.collector._replica`): each counts the
sessions of its shards only in the fleet and per-session series (``ActivityState.tallies``,
the engine's ``owns``), so a ``sum`` over the replicas is the fleet's (issue 13).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import Any, Final

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from lastactive.collector._activity import idle_since, latest, progress
from lastactive.collector._ages import IDLE_BUCKETS, RECENT_S
from lastactive.collector._core import Core
from lastactive.collector._flusher import Flusher
from lastactive.collector._lag import LAG_BUCKETS, WINDOW_S, LoopLag, Pauses
from lastactive.collector._state import NANOS, Entity
from lastactive.collector._stats import LATENCY_BUCKETS
from lastactive.conventions import (
    PROM_ACTIVITY_UPDATES,
    PROM_AUTH_FAILURES,
    PROM_CREDENTIALS,
    PROM_ENTITIES_REFUSED,
    PROM_FLUSH_DURATION,
    PROM_FLUSH_ROWS,
    PROM_FLUSHES,
    PROM_GC_PAUSE,
    PROM_GC_PAUSE_MAX,
    PROM_HOST_SESSIONS,
    PROM_INGEST_INFLIGHT,
    PROM_INSECURE,
    PROM_LOOP_LAG,
    PROM_LOOP_LAG_MAX,
    PROM_OTLP_ACCEPTED,
    PROM_OTLP_DURATION,
    PROM_OTLP_FAILED,
    PROM_OTLP_FORBIDDEN,
    PROM_OTLP_REJECTED,
    PROM_OTLP_REQUESTS,
    PROM_REPLICA_ENTITIES,
    PROM_REPLICA_SHARDS,
    PROM_REPLICAS_LIVE,
    PROM_REPORTER_CLOCK_OFFSET,
    PROM_REPORTERS,
    PROM_RUNAWAY_SECONDS,
    PROM_SESSION_IDLE,
    PROM_SESSION_INPUT_RATE,
    PROM_SESSION_OUTPUT_RATE,
    PROM_SESSION_RUNAWAY,
    PROM_SESSION_RUNAWAY_SECONDS,
    PROM_SESSION_STATE,
    PROM_SESSION_STUCK,
    PROM_SESSIONS,
    PROM_SESSIONS_IDLE,
    PROM_SESSIONS_RECENT,
    PROM_SHARD_TAKEOVERS,
    PROM_STORE_SKIPPED,
    PROM_TRANSITIONS,
    PROM_WATCH_QUEUED,
    PROM_WATCH_RESYNCS,
    PROM_WATCH_SUBSCRIBERS,
    AgentStatus,
)

RANK_SLICE: Final = 4096
"""Producing sessions ranked per turn of the event loop at a scrape (~1 us each)."""


def _counter(
    name: str, doc: str, labels: list[str], values: Mapping[Any, float]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=labels)
    for key, value in values.items():
        family.add_metric(list(key), value)
    return family


def _buckets(bounds: Sequence[float], counts: Sequence[float]) -> list[tuple[str, float]]:
    """Prometheus histogram buckets (``le`` label, cumulative count) from ``counts`` per bound
    and +Inf, not cumulative (one more count than bounds)."""
    out, cumulative = [], 0.0
    for bound, count in zip((*bounds, None), counts, strict=True):
        cumulative += count
        out.append((str(float(bound)) if bound is not None else "+Inf", cumulative))
    return out


class CoreCollector(Collector):
    """Reads :class:`~lastactive.collector._core.Core` (and the flusher) at each scrape."""

    def __init__(
        self,
        core: Core,
        flusher: Flusher,
        top: int,
        insecure: bool = False,
        lag: LoopLag | None = None,
        gc_pauses: tuple[Pauses, ...] = (),
    ) -> None:
        self._core = core
        self._flusher = flusher
        self._top = top
        self._insecure = insecure
        self._lag = lag
        self._gc_pauses = gc_pauses
        self._ranked: list[Entity] | None = None
        """The busiest sessions as :meth:`rank` found them, for the next collect only."""

    def collect(self) -> Iterator[Metric]:
        yield from self._health()
        yield from self._replica()
        yield from self._security()
        yield from self._fleet()

    def _replica(self) -> Iterator[Metric]:
        replica = self._core.replica
        if replica is None:
            return
        name = [replica.cluster.name]
        shards = GaugeMetricFamily(
            PROM_REPLICA_SHARDS,
            "shards whose transitions this replica evaluates",
            labels=["replica"],
        )
        shards.add_metric(name, len(replica.held))
        yield shards
        entities = GaugeMetricFamily(
            PROM_REPLICA_ENTITIES,
            "sessions, agents and hosts in memory: its shards', and others while in use",
            labels=["replica"],
        )
        entities.add_metric(name, self._core.state.count())
        yield entities
        yield GaugeMetricFamily(
            PROM_REPLICAS_LIVE, "replicas live at the last lease renewal", value=replica.live
        )
        takeovers = CounterMetricFamily(
            PROM_SHARD_TAKEOVERS, "shards this replica took a lease on", labels=["replica"]
        )
        takeovers.add_metric(name, replica.gained)
        yield takeovers

    def _security(self) -> Iterator[Metric]:
        credentials = self._core.credentials
        yield _counter(
            PROM_OTLP_FORBIDDEN,
            "rejected items about what the sender's credential may not report about",
            ["signal", "transport"],
            self._core.stats.forbidden,
        )
        yield _counter(
            PROM_AUTH_FAILURES,
            "calls refused 401 / UNAUTHENTICATED or 403 / PERMISSION_DENIED",
            ["transport", "reason"],
            credentials.failures,
        )
        if credentials.enabled:
            yield GaugeMetricFamily(
                PROM_CREDENTIALS, "credentials loaded from the auth file", value=len(credentials)
            )
        yield GaugeMetricFamily(
            PROM_INSECURE,
            "1 when serving beyond loopback without credentials or TLS (--insecure)",
            value=int(self._insecure),
        )

    def _health(self) -> Iterator[Metric]:
        core, stats = self._core, self._core.stats
        labels = ["signal", "transport"]
        yield _counter(
            PROM_OTLP_REQUESTS,
            "OTLP export requests received",
            labels,
            stats.requests,
        )
        yield _counter(
            PROM_OTLP_ACCEPTED,
            "data points, log records and spans applied to state",
            labels,
            stats.accepted,
        )
        yield _counter(
            PROM_OTLP_REJECTED,
            "data points, log records and spans rejected (partial success)",
            labels,
            stats.rejected,
        )
        yield _counter(
            PROM_OTLP_FAILED,
            "OTLP requests refused whole, by status (400, 413, 415, invalid_argument)",
            [*labels, "status"],
            stats.failed,
        )
        latency = HistogramMetricFamily(
            PROM_OTLP_DURATION,
            "time to decode and apply one OTLP request",
            labels=labels,
        )
        for key, counts in stats.latency.items():  # the last count is the sum
            latency.add_metric(
                list(key), _buckets(LATENCY_BUCKETS, counts[:-1]), sum_value=counts[-1]
            )
        yield latency
        clocks = core.ingest.clocks
        skewed = clocks.skewed()
        reporters = GaugeMetricFamily(
            PROM_REPORTERS, "reporters heard from in the last hour, by clock", labels=["clock"]
        )
        reporters.add_metric(["ok"], len(clocks) - len(skewed))
        reporters.add_metric(["skewed"], len(skewed))
        yield reporters
        offsets = GaugeMetricFamily(
            PROM_REPORTER_CLOCK_OFFSET,
            "estimated clock offset of each reporter beyond LASTACTIVE_MAX_CLOCK_SKEW "
            "(positive: behind); its timestamps are corrected by it",
            labels=["service_name", "service_instance_id", "host_id", "session_id"],
        )
        for c in skewed:
            offsets.add_metric([k or "" for k in c.key], c.offset / NANOS)
        yield offsets
        yield _counter(
            PROM_ACTIVITY_UPDATES,
            "activity updates applied, by source (seed 001's activity updates counter)",
            ["source"],
            {(k,): v for k, v in core.state.updates.items()},
        )
        yield CounterMetricFamily(
            PROM_RUNAWAY_SECONDS,
            "time sessions have spent runaway, summed over the fleet",
            value=core.engine.runaway_total_ns(core.clock()) / NANOS,
        )
        yield _counter(
            PROM_TRANSITIONS,
            "state transitions pushed",
            ["field", "to"],
            core.engine.transitions,
        )
        yield GaugeMetricFamily(
            PROM_WATCH_SUBSCRIBERS, "open Watch and SSE streams", value=core.hub.subscribers
        )
        yield GaugeMetricFamily(
            PROM_WATCH_QUEUED,
            "transitions waiting for slow subscribers (bounded per subscriber)",
            value=core.hub.queued,
        )
        yield CounterMetricFamily(
            PROM_WATCH_RESYNCS,
            "queue overflows turned into resync markers",
            value=core.hub.overflows,
        )
        flusher = self._flusher
        yield CounterMetricFamily(
            PROM_FLUSHES,
            "commits of changed entities (group commits and interval flushes)",
            value=flusher.flushes,
        )
        yield CounterMetricFamily(
            PROM_STORE_SKIPPED,
            "records a commit skipped because the store could not hold a value",
            value=flusher.skipped,
        )
        yield GaugeMetricFamily(
            PROM_INGEST_INFLIGHT,
            "exports being applied or waiting for their commit",
            value=core.admission.requests,
        )
        yield CounterMetricFamily(
            PROM_ENTITIES_REFUSED,
            "new sessions, agents or hosts refused at LASTACTIVE_MAX_ENTITIES",
            value=core.state.refused,
        )
        yield GaugeMetricFamily(
            PROM_FLUSH_ROWS, "rows written by the last flush", value=flusher.last_rows
        )
        yield GaugeMetricFamily(
            PROM_FLUSH_DURATION,
            "duration of the last flush",
            value=flusher.last_seconds,
        )
        if self._lag is not None:
            yield from self._loop_lag(self._lag)
        if self._gc_pauses:
            yield from self._gc(self._gc_pauses)

    def _loop_lag(self, lag: LoopLag) -> Iterator[Metric]:
        family = HistogramMetricFamily(
            PROM_LOOP_LAG, "how late a probe of the event loop woke (the loop was blocked)"
        )
        family.add_metric([], _buckets(LAG_BUCKETS, lag.counts), sum_value=lag.sum)
        yield family
        yield GaugeMetricFamily(
            PROM_LOOP_LAG_MAX,
            f"the longest event-loop lag probed in the last {WINDOW_S} s",
            value=lag.longest(time.monotonic()),
        )

    def _gc(self, pauses: tuple[Pauses, ...]) -> Iterator[Metric]:
        at = time.monotonic()
        family = HistogramMetricFamily(
            PROM_GC_PAUSE,
            "how long each cyclic garbage collection held the process (2: full)",
            labels=["generation"],
        )
        longest = GaugeMetricFamily(
            PROM_GC_PAUSE_MAX,
            f"the longest garbage collection of the last {WINDOW_S} s",
            labels=["generation"],
        )
        for generation, p in enumerate(pauses):
            family.add_metric([str(generation)], _buckets(LAG_BUCKETS, p.counts), sum_value=p.sum)
            longest.add_metric([str(generation)], p.longest(at))
        yield family
        yield longest

    def _fleet(self) -> Iterator[Metric]:
        """Fleet aggregates (kept by the transition engine as it evaluates) and the watched
        sessions' series."""
        core = self._core
        engine = core.engine
        now = core.clock()
        counts: dict[str, int] = {str(k): v for k, v in engine.sessions_by_state.items()}
        counts.update(engine.sessions_flagged)
        by_host = engine.host_sessions
        watched: dict[Entity, None] = dict(engine.flagged)  # runaway or stuck
        activity = core.state
        recent = activity.recent(now)
        idle_counts, idle_sum = activity.idle_histogram(now)

        fleet = GaugeMetricFamily(PROM_SESSIONS, "sessions per state or flag", labels=["state"])
        for state, value in counts.items():
            fleet.add_metric([state], value)
        yield fleet
        hosts = GaugeMetricFamily(
            PROM_HOST_SESSIONS, "sessions per host and state", labels=["host_id", "state"]
        )
        for (host, state), value in by_host.items():
            hosts.add_metric([host, state], value)
        yield hosts
        recent_family = GaugeMetricFamily(
            PROM_SESSIONS_RECENT,
            f"sessions with activity of this class in the last {RECENT_S} s (whole seconds)",
            labels=["class"],
        )
        for cls, value in recent.items():
            recent_family.add_metric([cls], value)
        yield recent_family
        buckets = _buckets(IDLE_BUCKETS, idle_counts)
        idle_family = HistogramMetricFamily(
            PROM_SESSIONS_IDLE,
            "sessions by whole seconds since their last counted activity (a snapshot at scrape)",
        )
        idle_family.add_metric([], buckets, sum_value=idle_sum)
        yield idle_family
        ranked, self._ranked = self._ranked, None
        if ranked is None:  # not ranked a slice at a time before this collect
            ranked = [e for _, e in self._busiest(activity.producers(now))]
        for e in ranked:
            if activity.tracked(e):
                watched[e] = None
        yield from self._per_session(watched, now)

    def _busiest(self, *ranked: Iterable[tuple[float, Entity]]) -> list[tuple[float, Entity]]:
        """The ``top`` (rate, session) pairs of ``ranked``, busiest first."""
        return heapq.nlargest(self._top, itertools.chain(*ranked), key=itemgetter(0))

    async def rank(self) -> None:
        """Rank the producing sessions by output rate for the next :meth:`collect`,
        :data:`RANK_SLICE` at a time with the event loop free between slices: at 1M sessions
        with 100k producing the whole walk takes ~0.1 s (issue 15)."""
        now = self._core.clock()
        activity = self._core.state
        producing = list(activity.producing)
        top: list[tuple[float, Entity]] = []
        for start in range(0, len(producing), RANK_SLICE):
            if start:
                await asyncio.sleep(0)
            top = self._busiest(top, activity.producers(now, producing[start : start + RANK_SLICE]))
        self._ranked = [e for _, e in top]

    def _per_session(self, watched: dict[Entity, None], now: int) -> Iterator[Metric]:
        engine = self._core.engine
        labels = ["session_id", "host_id", "agent"]
        out_rate = GaugeMetricFamily(
            PROM_SESSION_OUTPUT_RATE,
            "output over the last 30 s (watched sessions only)",
            labels=labels,
        )
        in_rate = GaugeMetricFamily(
            PROM_SESSION_INPUT_RATE,
            "input over the last 30 s (watched sessions only)",
            labels=labels,
        )
        idle = GaugeMetricFamily(
            PROM_SESSION_IDLE,
            "seconds since the last counted activity (watched sessions only)",
            labels=labels,
        )
        runaway = GaugeMetricFamily(
            PROM_SESSION_RUNAWAY,
            "1 while the session is runaway (watched sessions only)",
            labels=labels,
        )
        runaway_seconds = CounterMetricFamily(
            PROM_SESSION_RUNAWAY_SECONDS,
            "time the session has been runaway since the collector started (watched sessions "
            "only; increase() over a window is the time runaway in it)",
            labels=labels,
        )
        stuck = GaugeMetricFamily(
            PROM_SESSION_STUCK,
            "seconds a stuck agent has been without progress",
            labels=[*labels, "task"],
        )
        state = GaugeMetricFamily(
            PROM_SESSION_STATE,
            "1, labelled with the state (watched sessions only)",
            labels=[*labels, "state"],
        )
        for e in watched:
            key = [e.id, e.host_id or "", e.agent_id or ""]
            st = engine.condition_of(e)
            if st is not None:
                state.add_metric([*key, st.state], 1.0)
            out_rate.add_metric(key, e.rate_out.per_second(now))
            in_rate.add_metric(key, e.rate_in.per_second(now))
            since = idle_since(e.first_seen, latest(e.source_pairs())[1])
            idle.add_metric(key, max(0.0, (now - since) / NANOS))
            runaway.add_metric(key, 1.0 if st is not None and st.runaway else 0.0)
            spent = engine.runaway_ns(e, now)
            if spent:
                runaway_seconds.add_metric(key, spent / NANOS)
            if st is not None and st.stuck and e.details.status == AgentStatus.ACTIVE:
                stuck.add_metric(
                    [*key, e.details.task or ""], (now - progress(dict(e.source_pairs()))) / NANOS
                )
        yield from (out_rate, in_rate, idle, runaway, runaway_seconds, state, stuck)


class FleetRegistry(CollectorRegistry):
    """A registry holding only the collector's own metrics, and :meth:`prepare`, which does a
    scrape's bulk work before it, on the event loop a slice at a time."""

    def __init__(self, collector: CoreCollector) -> None:
        # Built at scrape, so no names up front; without names ``name[]`` filters would skip it.
        super().__init__(auto_describe=False, support_collectors_without_names=True)
        self.register(collector)
        self._collector = collector

    async def prepare(self) -> None:
        """Call right before collecting (no await between): the busiest sessions."""
        await self._collector.rank()


def registry_for(
    core: Core,
    flusher: Flusher,
    top: int = 20,
    *,
    insecure: bool = False,
    lag: LoopLag | None = None,
    gc_pauses: tuple[Pauses, ...] = (),
) -> FleetRegistry:
    """A fresh registry holding only the collector's own metrics (``insecure``: the bind is
    exposed without credentials or TLS; ``lag``: the event loop's probe; ``gc_pauses``: the
    cyclic GC's pauses per generation, :func:`~lastactive.collector._freeze.freezing`)."""
    return FleetRegistry(CoreCollector(core, flusher, top, insecure, lag, gc_pauses))
