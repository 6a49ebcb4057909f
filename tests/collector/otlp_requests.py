"""Hand-built OTLP requests with explicit timestamps (ns), for deterministic receiver tests."""

from __future__ import annotations

from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

S = 1_000_000_000


def kv(attrs: dict[str, Any]) -> list[KeyValue]:
    out = []
    for k, v in attrs.items():
        if isinstance(v, bool):
            val = AnyValue(bool_value=v)
        elif isinstance(v, int):
            val = AnyValue(int_value=v)
        elif isinstance(v, float):
            val = AnyValue(double_value=v)
        else:
            val = AnyValue(string_value=v)
        out.append(KeyValue(key=k, value=val))
    return out


def sum_point(value: int, t: int, start: int, **attrs: Any) -> metrics_pb2.NumberDataPoint:
    return metrics_pb2.NumberDataPoint(
        as_int=value, time_unix_nano=t, start_time_unix_nano=start, attributes=kv(attrs)
    )


def metrics_request(
    session_id: str,
    *,
    sums: dict[str, list[metrics_pb2.NumberDataPoint]] | None = None,
    gauges: dict[str, list[metrics_pb2.NumberDataPoint]] | None = None,
    host_id: str = "host-a",
) -> ExportMetricsServiceRequest:
    metrics = [
        metrics_pb2.Metric(
            name=name,
            sum=metrics_pb2.Sum(
                data_points=points,
                is_monotonic=True,
                aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
            ),
        )
        for name, points in (sums or {}).items()
    ] + [
        metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=points))
        for name, points in (gauges or {}).items()
    ]
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={
                    "attributes": kv(
                        {"session.id": session_id, "host.id": host_id, "service.name": "test"}
                    )
                },
                scope_metrics=[metrics_pb2.ScopeMetrics(scope={"name": "t"}, metrics=metrics)],
            )
        ]
    )
