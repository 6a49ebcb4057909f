"""lastactive instrumentation: report a session's activity as OpenTelemetry.

Usage::

    from lastactive.instrumentation import Reporter, Source

    reporter = Reporter(service_name="my-proxy")      # OTEL_EXPORTER_OTLP_* apply
    session = reporter.session("sess-42", {"gen_ai.agent.name": "codey"})
    reporter.activity(session, Source.START)            # a discrete event, exported as a log
    session.add_input(len(chunk))                       # hot path: plain field writes only
    session.add_output(len(chunk))
    session.record(Source.HEARTBEAT)
    ...
    reporter.shutdown()

Or wrap a program without touching its code: ``lastactive run -- CMD ARGS``.

The names and the meaning of each source are in :mod:`lastactive.conventions` and
``docs/conventions.md``. Exports load on first use (PEP 562), so importing the conventions alone
does not load the OpenTelemetry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lastactive.conventions import ActivityClass, Level, Source
    from lastactive.instrumentation._agent_task import AgentTask
    from lastactive.instrumentation._proxy import Connection, ProxyInstrument
    from lastactive.instrumentation._reporter import DEFAULT_EXPORT_INTERVAL_S, Reporter
    from lastactive.instrumentation._tracker import Clock, SessionTracker

_EXPORTS = {
    "Connection": "lastactive.instrumentation._proxy",
    "ProxyInstrument": "lastactive.instrumentation._proxy",
    "AgentTask": "lastactive.instrumentation._agent_task",
    "DEFAULT_EXPORT_INTERVAL_S": "lastactive.instrumentation._reporter",
    "Reporter": "lastactive.instrumentation._reporter",
    "Clock": "lastactive.instrumentation._tracker",
    "SessionTracker": "lastactive.instrumentation._tracker",
    "ActivityClass": "lastactive.conventions",
    "Level": "lastactive.conventions",
    "Source": "lastactive.conventions",
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
