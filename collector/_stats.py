"""Plain counters the edges add to; ``/metrics`` reads them at scrape (collector health)."""

from __future__ import annotations

import bisect
from typing import Final

from lastactive.collector._ingest import Outcome

LATENCY_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)
"""Upper bounds (seconds) of the ingest latency histogram."""


class IngestStats:
    """OTLP requests, items and latency by (signal, transport); failures by status too."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.accepted: dict[tuple[str, str], int] = {}
        self.rejected: dict[tuple[str, str], int] = {}
        self.forbidden: dict[tuple[str, str], int] = {}
        """Of the rejected: refused by the sender's credential's bindings."""
        self.failed: dict[tuple[str, str, str], int] = {}
        self.latency: dict[tuple[str, str], list[float]] = {}
        """Per key: bucket counts (non-cumulative, one per bound and +Inf), then the sum."""

    def ok(self, signal: str, transport: str, out: Outcome, seconds: float) -> None:
        """One request applied (possibly with partial success), taking ``seconds``."""
        key = (signal, transport)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.accepted[key] = self.accepted.get(key, 0) + out.accepted
        self.rejected[key] = self.rejected.get(key, 0) + out.rejected
        if out.forbidden:
            self.forbidden[key] = self.forbidden.get(key, 0) + out.forbidden
        buckets = self.latency.get(key)
        if buckets is None:
            buckets = self.latency[key] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        buckets[-1] += seconds

    def error(self, signal: str, transport: str, status: str) -> None:
        """One request refused whole (400, 413, 415 / INVALID_ARGUMENT ...)."""
        key = (signal, transport)
        self.requests[key] = self.requests.get(key, 0) + 1
        fkey = (signal, transport, status)
        self.failed[fkey] = self.failed.get(fkey, 0) + 1
