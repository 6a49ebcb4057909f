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
``docs/conventions.md``. Exports load on first use (PEP 562), so importing the conventions alone
does not load the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from instrumentation._agent_task import AgentTask
    from instrumentation._proxy import Connection, ProxyInstrument
    from instrumentation._reporter import DEFAULT_EXPORT_INTERVAL_S, Reporter
    from instrumentation._tracker import Clock, SessionTracker
    from instrumentation.conventions import ActivityClass, Level, Source

_EXPORTS = {
    "Connection": "instrumentation._proxy",
    "ProxyInstrument": "instrumentation._proxy",
    "AgentTask": "instrumentation._agent_task",
    "DEFAULT_EXPORT_INTERVAL_S": "instrumentation._reporter",
    "Reporter": "instrumentation._reporter",
    "Clock": "instrumentation._tracker",
    "SessionTracker": "instrumentation._tracker",
    "ActivityClass": "instrumentation.conventions",
    "Level": "instrumentation.conventions",
    "Source": "instrumentation.conventions",
}

__all__ = [
    "DEFAULT_EXPORT_INTERVAL_S",
    "ActivityClass",
    "AgentTask",
    "Clock",
    "Connection",
    "Level",
    "ProxyInstrument",
    "Reporter",
    "SessionTracker",
    "Source",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'instrumentation' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
