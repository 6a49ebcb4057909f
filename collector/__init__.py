"""lastactive collector: OTLP in, last-activity state per session, agent and host out.

Usage::

    lastactive serve                       # OTLP/gRPC :4317, OTLP/HTTP :4318, SQLite state
    curl localhost:4318/v1/sessions        # sessions, most recent first, with idle_seconds

As a library, :func:`serve` runs both servers on the current event loop; :class:`ActivityState`
and :class:`Ingest` are the pure core (no I/O, clock passed in) behind them.
"""

from collector._ingest import Ingest, Outcome
from collector._server import Bound, serve
from collector._state import ActivityState, EntityRecord, EntityView, Identity, Kind
from collector.settings import Settings
from collector.store import SqliteStore, Store

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
