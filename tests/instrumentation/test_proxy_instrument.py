"""``ProxyInstrument``: what a proxied connection's span says, through the SDK's own in-memory
exporter."""

from __future__ import annotations

import io

from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter
from opentelemetry.sdk.metrics.export import ConsoleMetricExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from lastactive.instrumentation import ProxyInstrument, Reporter


def test_the_connection_span_names_the_client_address_and_port_apart() -> None:
    """Semantic conventions: ``client.address`` is the address only, ``client.port`` the port."""
    spans = InMemorySpanExporter()
    reporter = Reporter(
        export_interval=3600,
        metric_exporter=ConsoleMetricExporter(out=io.StringIO()),
        log_exporter=InMemoryLogRecordExporter(),
        span_exporter=spans,
        endpoint="http://127.0.0.1:9",
    )
    try:
        instrument = ProxyInstrument(reporter, "vnc-1", protocol="rfb")
        conn = instrument.connect("203.0.113.7", 51234)
        conn.close("client closed")
        v6 = instrument.connect("2001:db8::1", 443)
        v6.close("client closed")
        reporter.flush()
        got = [dict(s.attributes or {}) for s in spans.get_finished_spans()]
        assert [(a["client.address"], a["client.port"]) for a in got] == [
            ("203.0.113.7", 51234),
            ("2001:db8::1", 443),
        ]
        assert all(a["network.protocol.name"] == "rfb" for a in got)
    finally:
        reporter.shutdown()
