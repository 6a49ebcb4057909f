"""A PostgreSQL outage under a serving collector (a real server stopped and started again on
the same data and port): exports are refused retryably (503 + Retry-After) and ``/readyz``
says why while the database is down, nothing acknowledged is lost, what was refused is kept in
memory and committed once the database is back, and the collector recovers without a restart.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from lastactive.collector.store import PostgresStore
from tests.helpers import (
    PROTO,
    InProcessCollector,
    PostgresServer,
    metrics_request,
    sum_point,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

S = 1_000_000_000


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: the test stops it."""
    try:
        server = PostgresServer()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


def _input(c: InProcessCollector, sid: str) -> int:
    """Report input on session ``sid`` now; returns the HTTP status."""
    req = metrics_request(sid, gauges={"lastactive.source.last_time": [
        sum_point(0, time.time_ns(), 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = (
        time.time_ns() / S
    )
    return c.post("/v1/metrics", req.SerializeToString(), PROTO)[0]


def test_an_outage_refuses_retryably_and_loses_nothing(own_postgres: PostgresServer) -> None:
    url = own_postgres.create_database("outage")
    c = InProcessCollector(PostgresStore(url), flush_interval=0.1).start()
    try:
        assert _input(c, "before") == 200
        own_postgres.halt()
        status = _input(c, "during")
        assert status == 503
        wait_for(lambda: c.get("/readyz")[0] == 503, 10, "/readyz 503 during the outage")
        assert "the state store failed" in str(c.get("/readyz")[1])
        assert c.session("during") is not None  # kept in memory, answered from it
        for query in ("/v1/decisions", "/v1/sessions", "/v1/watch"):  # from the store: retry
            status, body = c.get(query)
            assert status == 503 and "the state store failed" in str(body), query
        own_postgres.start()
        wait_for(lambda: _input(c, "after") == 200, 30, "exports acknowledged again")
        wait_for(lambda: c.get("/readyz")[0] == 200, 10, "/readyz 200 again")
        assert {s["id"] for s in c.get("/v1/sessions")[1]["sessions"]} == {
            "before", "during", "after"
        }  # fmt: skip
    finally:
        c.stop()
    again = InProcessCollector(PostgresStore(url)).start()
    try:
        for sid in ("before", "during", "after"):
            assert again.session(sid) is not None, sid
    finally:
        again.stop()
