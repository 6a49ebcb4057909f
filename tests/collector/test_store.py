"""SqliteStore on a real file: round trip, merge rules, one transaction, reopen."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from lastactive.collector._record import EntityRecord
from lastactive.collector.store import SqliteStore


def rec(
    last_seen: int, sources: dict[str, int], first_seen: int = 10, out: int = 0
) -> EntityRecord:
    return EntityRecord(
        kind="session",
        id="s1",
        host_id="h",
        service_name="svc",
        first_seen=first_seen,
        last_seen=last_seen,
        sources=tuple(sorted(sources.items())),
        output_bytes=out,
        pid=7,
    )


def test_round_trip_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = SqliteStore(path)
    store.save([rec(100, {"input": 90, "output": 95}, out=12)])
    store.close()
    store.close()  # idempotent
    again = SqliteStore(path)
    assert again.load() == [rec(100, {"input": 90, "output": 95}, out=12)]
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again.close()


def test_save_merges_with_max_and_min(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    store.save([rec(100, {"input": 90, "output": 95}, first_seen=10, out=12)])
    store.save([rec(80, {"input": 70, "prompt": 60}, first_seen=5, out=3)])  # older replica
    (got,) = store.load()
    assert got.last_seen == 100 and got.first_seen == 5 and got.output_bytes == 12
    assert dict(got.sources) == {"input": 90, "output": 95, "prompt": 60}
    store.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=99")
    db.close()
    with pytest.raises(sqlite3.DatabaseError, match="newer"):
        SqliteStore(path)


def test_an_older_database_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE entities (kind TEXT NOT NULL, id TEXT NOT NULL, host_id TEXT,
            agent_id TEXT, service_name TEXT, first_seen INTEGER NOT NULL,
            last_seen INTEGER NOT NULL, sources TEXT NOT NULL, input_bytes INTEGER NOT NULL,
            output_bytes INTEGER NOT NULL, pid INTEGER, exit_code INTEGER,
            PRIMARY KEY (kind, id)) WITHOUT ROWID;
        INSERT INTO entities VALUES
            ('session', 's1', 'h', NULL, 'svc', 10, 100, '{"input":90}', 0, 12, 7, NULL);
        PRAGMA user_version=1;
        """
    )
    db.close()
    store = SqliteStore(path)  # schema 1 -> the current one
    (old,) = store.load()
    assert old == rec(100, {"input": 90}, out=12)
    store.save([replace(rec(100, {}), attributes=(("team", "ml"),))])
    store.save([replace(rec(100, {}), attributes=(("region", "eu"), ("team", "infra")))])
    (got,) = store.load()  # attributes merge key by key, the later value winning
    assert dict(got.attributes) == {"region": "eu", "team": "infra"}
    assert dict(got.sources) == {"input": 90}
    store.close()
