"""The collector's own metrics, Prometheus exposition at ``GET /metrics``.

A custom collector reads plain fields of the core at scrape time (the hot paths only add to
ints), so ingest never pays for metrics. Names follow Prometheus conventions (``_total`` for
counters, units in the name).
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from collector._core import Core
from collector._flusher import Flusher


class CoreCollector(Collector):
    """Reads :class:`~collector._core.Core` (and the flusher) at each scrape."""

    def __init__(self, core: Core, flusher: Flusher) -> None:
        self._core = core
        self._flusher = flusher

    def collect(self) -> Iterator[Metric]:
        core = self._core
        ingest = core.ingest
        for name, source, doc in (
            ("lastactive_otlp_requests", ingest.requests, "OTLP export requests received"),
            ("lastactive_otlp_items_accepted", ingest.accepted,
             "data points, log records and spans applied to state"),
            ("lastactive_otlp_items_rejected", ingest.rejected,
             "data points, log records and spans rejected through partial success"),
        ):  # fmt: skip
            family = CounterMetricFamily(name, doc, labels=["signal"])
            for signal, value in source.items():
                family.add_metric([signal], value)
            yield family

        transitions = CounterMetricFamily(
            "lastactive_transitions", "state transitions pushed", labels=["field", "to"]
        )
        for (field, to), value in core.engine.transitions.items():
            transitions.add_metric([field, to], value)
        yield transitions

        sessions = GaugeMetricFamily(
            "lastactive_sessions", "sessions per state or flag", labels=["state"]
        )
        for state, value in core.engine.counts().items():
            sessions.add_metric([state], value)
        yield sessions

        yield GaugeMetricFamily(
            "lastactive_watch_subscribers", "open Watch and SSE streams",
            value=core.hub.subscribers,
        )  # fmt: skip
        yield GaugeMetricFamily(
            "lastactive_watch_queued_transitions",
            "transitions waiting for slow subscribers (bounded per subscriber)",
            value=core.hub.queued,
        )
        yield CounterMetricFamily(
            "lastactive_watch_resyncs", "queue overflows turned into resync markers",
            value=core.hub.overflows,
        )  # fmt: skip
        yield CounterMetricFamily(
            "lastactive_flushes", "write-behind flushes", value=self._flusher.flushes
        )
        yield GaugeMetricFamily(
            "lastactive_flush_rows", "rows written by the last flush", value=self._flusher.last_rows
        )
        yield GaugeMetricFamily(
            "lastactive_flush_duration_seconds", "duration of the last flush",
            value=self._flusher.last_seconds,
        )  # fmt: skip


def registry_for(core: Core, flusher: Flusher) -> CollectorRegistry:
    """A fresh registry holding only the collector's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(CoreCollector(core, flusher))
    return registry
