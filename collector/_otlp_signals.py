"""The three OTLP signals as both receivers serve them: one table, no string dispatch.

Each :class:`OtlpSignal` names its gRPC service, its request and response messages, the
response's partial-success field (OTLP specification, "Partial Success") and the
:class:`~lastactive.collector._ingest.Ingest` method that applies it in slices. The gRPC edge serves
``<service>/Export``; the HTTP edge serves ``POST /v1/<name>`` (OTLP/HTTP's default paths).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from google.protobuf.message import Message
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as logs_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb

from lastactive.collector._auth import Principal, Scope
from lastactive.collector._ingest import Ingest, Outcome, Slices

__all__ = ["SIGNALS", "OtlpSignal", "export_response"]


@dataclass(frozen=True, slots=True)
class OtlpSignal:
    """One OTLP signal: ``name`` is ``metrics``, ``logs`` or ``traces`` (the HTTP path's last
    segment and the ``signal`` label on ``/metrics``); ``scopes``: a caller needs one of them
    (logs carry the ``act`` scope's hibernation records)."""

    name: str
    service: str
    request: type[Message]
    response: type[Message]
    rejected_field: str
    sliced: Callable[[Ingest, Any, Principal], Slices]
    scopes: tuple[Scope, ...]


SIGNALS: Final = (
    OtlpSignal(
        "metrics",
        "opentelemetry.proto.collector.metrics.v1.MetricsService",
        metrics_pb.ExportMetricsServiceRequest,
        metrics_pb.ExportMetricsServiceResponse,
        "rejected_data_points",
        Ingest.metrics_sliced,
        (Scope.REPORT,),
    ),
    OtlpSignal(
        "logs",
        "opentelemetry.proto.collector.logs.v1.LogsService",
        logs_pb.ExportLogsServiceRequest,
        logs_pb.ExportLogsServiceResponse,
        "rejected_log_records",
        Ingest.logs_sliced,
        (Scope.REPORT, Scope.ACT),
    ),
    OtlpSignal(
        "traces",
        "opentelemetry.proto.collector.trace.v1.TraceService",
        trace_pb.ExportTraceServiceRequest,
        trace_pb.ExportTraceServiceResponse,
        "rejected_spans",
        Ingest.traces_sliced,
        (Scope.REPORT,),
    ),
)


def export_response(signal: OtlpSignal, out: Outcome) -> Message:
    """The signal's ``Export*ServiceResponse``, with partial success when something was
    rejected (the count and the first rejection's message)."""
    resp = signal.response()
    if out.rejected:
        partial: Any = resp.partial_success  # type: ignore[attr-defined]
        setattr(partial, signal.rejected_field, out.rejected)
        partial.error_message = out.error_message
    return resp
