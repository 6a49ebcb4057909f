"""Admission control for ingest: bounded work in flight, the rest shed the way OTLP clients
retry.

An export is *in flight* from the moment an edge admits it until it is answered (parsed,
applied and waiting for its commit). At most ``max_requests`` exports and ``max_bytes`` of
their bodies are in flight; beyond that an export is refused at once, before it is parsed, with
gRPC ``UNAVAILABLE`` + ``RetryInfo`` or HTTP 503 + ``Retry-After`` (OTLP specification,
"Failures" and "OTLP/HTTP Throttling": the official exporters retry those with back-off, so
nothing is lost), and the query API, which is never shed, keeps its share of the event loop.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_MAX_REQUESTS", "Admission"]

DEFAULT_MAX_REQUESTS: Final = 64
"""Exports in flight at most, by default (``LASTACTIVE_MAX_INFLIGHT_REQUESTS``)."""
DEFAULT_MAX_BYTES: Final = 32 * 1024 * 1024
"""Bytes of export bodies in flight at most, by default (``LASTACTIVE_MAX_INFLIGHT_BYTES``)."""


@dataclass(slots=True)
class Admission:
    """Counts exports in flight. Not thread-safe: used on the event loop only.

    Args:
        max_requests: exports in flight at most.
        max_bytes: bytes of their (compressed) bodies in flight at most.
        retry_after_s: the mean delay (seconds) a refused client is told to wait; each refusal
            gets it jittered by +-50 % (:meth:`retry_delay`).
    """

    max_requests: int = DEFAULT_MAX_REQUESTS
    max_bytes: int = DEFAULT_MAX_BYTES
    retry_after_s: float = 1.0
    requests: int = 0
    bytes: int = 0
    shed: int = 0
    """Exports refused so far (for ``/metrics``)."""

    def enter(self, size: int) -> bool:
        """Admit an export of ``size`` bytes (``True``), or count it shed (``False``). One
        export is always admitted when none is in flight, whatever its size (the request size
        limit bounds it)."""
        if self.requests and (
            self.requests >= self.max_requests or self.bytes + size > self.max_bytes
        ):
            self.shed += 1
            return False
        self.requests += 1
        self.bytes += size
        return True

    def leave(self, size: int) -> None:
        """An admitted export of ``size`` bytes was answered."""
        self.requests -= 1
        self.bytes -= size

    def retry_delay(self) -> float:
        """The delay (seconds) to tell one refused client: ``retry_after_s`` +-50 %, so that
        exporters refused together do not all retry together (exporters honour RetryInfo's
        delay as given, without jitter of their own)."""
        return self.retry_after_s * random.uniform(0.5, 1.5)

    def refusal(self, delay: float) -> str:
        """The message an export refused with ``delay`` gets."""
        return (
            f"the collector is at its ingest limit ({self.requests} exports, {self.bytes} bytes "
            f"in flight); retry in {delay:.1f} s"
        )
