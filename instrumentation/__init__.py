"""lastactive instrumentation: report a session's activity as OpenTelemetry.

Usage::

    from instrumentation import Reporter, Source

    reporter = Reporter(service_name="my-proxy")      # OTEL_EXPORTER_OTLP_* apply
    session = reporter.session("sess-42", {"gen_ai.agent.name": "codey"})
    reporter.activity(session, Source.START)            # a discrete event, exported as a log
    session.add_input(len(chunk))                       # hot path: plain field writes only
    session.add_output(len(chunk))
    session.record(Source.HEARTBEAT)
    ...
    reporter.shutdown()

Or wrap a program without touching its code: ``lastactive run -- CMD ARGS``.

The names and the meaning of each source are in :mod:`instrumentation.conventions` and
``docs/conventions.md``.
"""

from instrumentation._reporter import DEFAULT_EXPORT_INTERVAL_S, Reporter
from instrumentation._tracker import Clock, SessionTracker
from instrumentation.conventions import ActivityClass, Level, Source

__all__ = [
    "DEFAULT_EXPORT_INTERVAL_S",
    "ActivityClass",
    "Clock",
    "Level",
    "Reporter",
    "SessionTracker",
    "Source",
]
