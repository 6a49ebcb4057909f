"""lastactive collector: OTLP in, last-activity state per session, agent and host out.

Usage::

    lastactive serve                       # OTLP/gRPC :4317, OTLP/HTTP :4318, SQLite state
    curl localhost:4318/v1/sessions        # sessions, most recent first, with idle_seconds

As a library, :func:`serve` runs both servers on the current event loop; :class:`ActivityState`
and :class:`Ingest` are the pure core (no I/O, clock passed in) behind them.

Exports load on first use (PEP 562), so short-lived commands (hooks) start fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lastactive.collector._ingest import Ingest, Outcome
    from lastactive.collector._record import EntityRecord
    from lastactive.collector._server import Bound, serve
    from lastactive.collector._state import ActivityState, EntityView, Identity, Kind
    from lastactive.collector.settings import Settings
    from lastactive.collector.store import SqliteStore, Store

_EXPORTS = {
    "ActivityState": "lastactive.collector._state",
    "Bound": "lastactive.collector._server",
    "EntityRecord": "lastactive.collector._record",
    "EntityView": "lastactive.collector._state",
    "Identity": "lastactive.collector._state",
    "Ingest": "lastactive.collector._ingest",
    "Kind": "lastactive.collector._state",
    "Outcome": "lastactive.collector._ingest",
    "Settings": "lastactive.collector.settings",
    "SqliteStore": "lastactive.collector.store",
    "Store": "lastactive.collector.store",
    "serve": "lastactive.collector._server",
}

__all__ = [
    "ActivityState",
    "Bound",
    "EntityRecord",
    "EntityView",
    "Identity",
    "Ingest",
    "Kind",
    "Outcome",
    "Settings",
    "SqliteStore",
    "Store",
    "serve",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'collector' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
