"""Fixtures only; shared helpers live in :mod:`tests.helpers`."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import Collector, InProcessCollector, PostgresServer


@pytest.fixture(autouse=True)
def _state_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test (and the processes it starts) has its own user state directory: the one-shot
    reporters' spool must not carry reports from one test into another."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))


@pytest.fixture
def collector() -> Iterator[InProcessCollector]:
    """The real servers in this process, on ports 0, with an in-memory SQLite store."""
    c = InProcessCollector(flush_interval=0.2).start()
    yield c
    c.stop()


@pytest.fixture
def collector_process(tmp_path: Path) -> Iterator[Collector]:
    """A ``lastactive serve`` process on ports 0 with a SQLite file in ``tmp_path``."""
    c = Collector(tmp_path / "state.db").start()
    yield c
    if c.proc is not None and c.proc.poll() is None:
        c.stop()


@pytest.fixture
def lastactive_env() -> dict[str, str]:
    """Environment for ``lastactive run`` subprocesses: fast exports, no inherited OTel config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "LASTACTIVE_"))}
    env["OTEL_METRIC_EXPORT_INTERVAL"] = "300"
    return env


_databases = itertools.count()
"""Numbers the databases ``postgres_url`` creates (test names may repeat across modules)."""


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the whole run (started on first use). Skipped where
    PostgreSQL is not installed, except under CI (``.ci/run`` installs it), where that fails."""
    try:
        server = PostgresServer()
    except FileNotFoundError as exc:
        if os.environ.get("CI"):
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres: PostgresServer, request: pytest.FixtureRequest) -> str:
    """The URL of a new empty database for this test on the shared server."""
    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[-50:]
    return postgres.create_database(f"{name}_{next(_databases)}")
