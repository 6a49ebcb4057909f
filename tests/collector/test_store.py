"""SqliteStore on a real file: round trip, merge rules, one transaction, reopen."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from collector._state import EntityRecord
from collector.store import SqliteStore


def rec(
    last_seen: int, sources: dict[str, int], first_seen: int = 10, out: int = 0
) -> EntityRecord:
    return EntityRecord(
        "session",
        "s1",
        "h",
        None,
        "svc",
        first_seen,
        last_seen,
        tuple(sources.items()),
        0,
        out,
        7,
        None,
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
