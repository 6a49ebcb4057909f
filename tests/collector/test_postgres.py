"""PostgresStore on a real server (the ``postgres`` fixture): what the contract suite does not
cover: exact counter values, values PostgreSQL cannot hold, schema versions, several processes
writing and migrating at once, the settings that select it."""

from __future__ import annotations

import json
import random
import threading
import urllib.parse
from dataclasses import replace

import psycopg
import pytest
from pydantic import ValidationError

from lastactive.collector._postgres import _SCHEMA, _SCHEMA_VERSION
from lastactive.collector._record import EntityRecord, StreamRecord
from lastactive.collector.settings import Settings
from lastactive.collector.store import PostgresStore, StoreError, open_store, without_password
from tests.collector.test_store_contract import fold
from tests.helpers import InProcessCollector

S = 1_000_000_000
JSON = {"Content-Type": "application/json"}


def rec(key: str, t: int, **fields: object) -> EntityRecord:
    return EntityRecord(kind="session", id=key, first_seen=t, last_seen=t, **fields)  # type: ignore[arg-type]


def test_round_trip_with_exact_counter_values_and_reopen(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    r = rec("s1", 10 * S, host_id="h", sources=(("input", 9 * S),), holds=(("lease:L", 5, 0),),
            attributes=(("team", "ml"),), output_bytes=2**62, pid=7, status="active",
            status_time=3)  # fmt: skip
    streams = [StreamRecord("big", 1, 2, 2**62 + 1), StreamRecord("float", 1, 2, 0.1)]
    store.save([r], streams)
    store.close()
    store.close()  # idempotent
    again = PostgresStore(postgres_url)  # an existing schema is used as it is
    assert again.load() == [r]
    got = {s.key: s for s in again.load_streams()}
    assert got["big"].value == 2**62 + 1 and isinstance(got["big"].value, int)
    assert got["float"].value == 0.1
    again.save([], [StreamRecord("big", 1, 1, 5)])  # an older point leaves the baseline
    assert {s.key: s.value for s in again.load_streams()}["big"] == 2**62 + 1
    again.delete([("session", "s1")], streams_before=2)
    assert again.load() == [] and again.load_streams() == []
    again.close()


def test_a_record_postgresql_cannot_hold_is_skipped_and_the_rest_saved(
    postgres_url: str,
) -> None:
    store = PostgresStore(postgres_url)
    bad = rec("s\x00nul", 5 * S)  # PostgreSQL text holds no NUL (ingest refuses such ids)
    also_bad = rec("s2", 5 * S, task="surrogate \udc80")  # not encodable as UTF-8
    good = [rec("s1", 5 * S), rec("s3", 6 * S)]
    assert store.save([good[0], bad, also_bad, good[1]], [StreamRecord("k", 1, 2, 3)]) == 2
    assert sorted(store.load(), key=lambda r: r.id) == good
    assert [s.key for s in store.load_streams()] == ["k"]
    store.save([replace(good[0], last_seen=9 * S)])  # and the store keeps working
    assert {r.id: r.last_seen for r in store.load()} == {"s1": 9 * S, "s3": 6 * S}
    store.close()


def test_a_newer_schema_is_refused(postgres_url: str) -> None:
    PostgresStore(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE lastactive_schema SET version = 99")
    with pytest.raises(StoreError, match="schema version 99 is newer"):
        PostgresStore(postgres_url)


def test_an_unreachable_server_is_a_store_error(postgres_url: str) -> None:
    port = urllib.parse.urlsplit(postgres_url).port
    url = postgres_url.replace(f":{port}/", ":1/")
    with pytest.raises(StoreError, match="PostgreSQL store"):
        PostgresStore(url, connect_timeout=2)


def test_a_version_1_database_is_migrated_with_its_rows(postgres_url: str) -> None:
    """A database made by the first PostgreSQL store (schema version 1) is brought to the
    current version on start, its sessions and counter baselines kept."""
    with psycopg.connect(postgres_url) as conn:
        conn.execute("CREATE TABLE lastactive_schema (version integer NOT NULL)")
        for statement in _SCHEMA:
            conn.execute(statement)
        conn.execute("INSERT INTO lastactive_schema VALUES (1)")
        conn.execute("INSERT INTO entities (kind, id, first_seen, last_seen, input_bytes) "
                     "VALUES ('session', 'old', 1, 2, 42)")  # fmt: skip
        conn.execute("INSERT INTO streams VALUES ('k', 1, 2, 12345678901234567890)")
    store = PostgresStore(postgres_url)
    try:
        assert [(r.id, r.input_bytes) for r in store.load()] == [("old", 42)]
        assert store.load_streams() == [StreamRecord("k", 1, 2, 12345678901234567890)]
        with store.connection() as conn:
            assert conn.execute("SELECT version FROM lastactive_schema").fetchone() == (
                _SCHEMA_VERSION,
            )
            row = conn.execute("SELECT shard, prev_time FROM entities, streams").fetchone()
        assert row is not None and 0 <= row[0] < 64 and row[1] is None
    finally:
        store.close()


def test_replicas_starting_together_create_the_schema_once(postgres_url: str) -> None:
    stores: list[PostgresStore] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            stores.append(PostgresStore(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(stores) == 6
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT version FROM lastactive_schema").fetchall() == [
            (_SCHEMA_VERSION,)
        ]
    for s in stores:
        s.close()


def test_several_writers_on_overlapping_keys_end_in_the_pure_merge(postgres_url: str) -> None:
    """Four writers commit batches of the same ten entities in random orders at once (no
    deadlock: keys are written in order) and the rows end as the fold of every record.
    Times are distinct, holds open-ended and a session's host fixed, so the fold does not
    depend on commit order (the last writer's host_id, pid and exit code would: issue 13)."""
    rng = random.Random(5)
    times = iter(rng.sample(range(1, 10**6), 10**5))
    sources = ("input", "output", "agent", "start")

    def record() -> EntityRecord:
        t = next(times) * S
        n = rng.randrange(10)
        return rec(f"s{n}", t, host_id=f"h{n % 3}",
                   sources=tuple(sorted({s: next(times) * S for s in rng.sample(sources, 2)}
                                        .items())),
                   input_bytes=next(times), holds=((f"lease:{rng.randrange(4)}", next(times), 0),),
                   status=rng.choice(["active", "completed"]), status_time=next(times))  # fmt: skip

    batches = [[[record() for _ in range(rng.randrange(1, 12))] for _ in range(40)]
               for _ in range(4)]  # fmt: skip
    stores = [PostgresStore(postgres_url) for _ in batches]
    errors: list[BaseException] = []

    def write(store: PostgresStore, mine: list[list[EntityRecord]]) -> None:
        try:
            for batch in mine:
                store.save(batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=p) for p in zip(stores, batches, strict=True)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    expected = fold([r for mine in batches for batch in mine for r in batch])
    assert {r.key: r for r in stores[0].load()} == expected
    for s in stores:
        s.close()


def test_the_settings_select_postgresql(postgres_url: str) -> None:
    settings = Settings(store=postgres_url)
    store = open_store(settings.db, settings.store)
    assert isinstance(store, PostgresStore)
    store.close()
    with pytest.raises(ValidationError, match="expected a postgresql:// URL, got 'mysql'"):
        Settings(store="mysql://x/y")
    with pytest.raises(StoreError, match="expected a postgresql:// URL, got 'sqlite'"):
        open_store(settings.db, "sqlite:///x.db")


def test_without_password() -> None:
    assert without_password("postgresql://u:secret@db:5432/x?sslmode=require") == (
        "postgresql://u:***@db:5432/x?sslmode=require"
    )
    assert without_password("postgresql://u@db/x") == "postgresql://u@db/x"


def test_text_postgresql_cannot_hold_is_refused_or_replaced_at_the_edge(
    postgres_url: str,
) -> None:
    """What a client is told OK about is stored: an id with a NUL character is refused
    (400), free text has it replaced by U+FFFD, and a restart shows what was acknowledged."""
    c = InProcessCollector(PostgresStore(postgres_url), flush_interval=0.05).start()
    try:
        status, reply, _ = c.post("/v1/agent-events", json.dumps(
            {"action": "spawn", "sessionKey": "a\x00b"}).encode(), JSON)  # fmt: skip
        assert status == 400 and b"holds a NUL character (U+0000)" in reply
        status, _, _ = c.post("/v1/agent-events", json.dumps(
            {"action": "complete", "sessionKey": "s", "task": "t\x00", "result": "\x00r"}
        ).encode(), JSON)  # fmt: skip
        assert status == 200
    finally:
        c.stop()
    again = InProcessCollector(PostgresStore(postgres_url)).start()
    try:
        s = again.session("s")
        assert s is not None and (s["task"], s["result"]) == ("t\ufffd", "\ufffdr")
    finally:
        again.stop()
