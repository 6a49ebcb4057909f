"""The store contract: every :class:`Store` merges records exactly as the pure
:func:`~lastactive.collector._record.merge` says, whatever order batches arrive in.

Parametrized over the store implementations (SQLite in memory and in a file, PostgreSQL on a
real server): random records of a
few entities, saved in random batches, must load back as the fold of ``merge`` over the same
sequence; and ``ActivityState.load`` gives the same state.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lastactive.collector._record import HOLD_GRACE_NS, RECORD_FIELDS, EntityRecord, merge
from lastactive.collector._state import ActivityState
from lastactive.collector.store import PostgresStore, SqliteStore, Store

S = 1_000_000_000
T0 = 1_800_000_000 * S

STORES = ("postgresql", "sqlite-file", "sqlite-memory")


@pytest.fixture(params=STORES)
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Store]]:
    """Makes empty stores of one kind, closing the one made before: SQLite in memory, SQLite
    files, PostgreSQL (a schema of its own in this test's database on the real server)."""
    made: list[Store] = []
    counter = itertools.count()
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else ""

    def make() -> Store:  # a new one for each example: the previous one is done with
        while made:
            made.pop().close()
        n = next(counter)
        store: Store
        if request.param == "postgresql":
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA s{n}")  # type: ignore[arg-type]  # a number
            store = PostgresStore(f"{url}?options=-csearch_path%3Ds{n}")
        elif request.param == "sqlite-file":
            store = SqliteStore(tmp_path / f"contract{n}.db")
        else:
            store = SqliteStore(":memory:")
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


times = st.integers(T0 - 3 * HOLD_GRACE_NS, T0 + 3 * HOLD_GRACE_NS)
maybe = st.none() | st.sampled_from(["a", "b", ""])
pairs = st.lists(st.tuples(st.sampled_from(["input", "output", "start", "agent"]), times))
holds = st.lists(
    st.tuples(
        st.sampled_from(["lease:L1", "client:pts/1", "foreground:1"]),
        times,
        st.sampled_from([0]) | times,
    )
)


@st.composite
def records(draw: st.DrawFn) -> EntityRecord:
    first = draw(times)
    status = draw(st.none() | st.sampled_from(["active", "completed", "error"]))
    turn = draw(st.none() | st.sampled_from(["working", "waiting"]))
    fields = dict(
        kind=draw(st.sampled_from(["session", "host"])),
        id=draw(st.sampled_from(["s1", "s2"])),
        host_id=draw(maybe),
        agent_id=draw(maybe),
        service_name=draw(maybe),
        first_seen=first,
        last_seen=first + draw(st.integers(0, 10 * S)),
        sources=tuple(sorted(dict(draw(pairs)).items())),
        input_bytes=draw(st.integers(0, 2**62)),
        output_bytes=draw(st.integers(0, 2**62)),
        pid=draw(st.none() | st.integers(1, 2**31)),
        exit_code=draw(st.none() | st.integers(0, 255)),
        holds=tuple(sorted({k: (k, t, u) for k, t, u in draw(holds)}.values())),
        status=status,
        status_time=0 if status is None else draw(times),
        task=draw(maybe),
        result=draw(maybe),
        attributes=tuple(
            sorted(
                dict(
                    draw(
                        st.lists(
                            st.tuples(st.sampled_from(["team", "env"]), st.sampled_from(["x", "y"]))
                        )
                    )
                ).items()
            )
        ),
        turn=turn,
        turn_time=0 if turn is None else draw(times),
    )
    # Every field varies, so a field that record(), restore(), merge or a store forgets fails.
    assert set(fields) == set(RECORD_FIELDS)
    return EntityRecord(**fields)


def fold(records: list[EntityRecord]) -> dict[tuple[str, str], EntityRecord]:
    out: dict[tuple[str, str], EntityRecord] = {}
    for r in records:
        out[r.key] = merge(out[r.key], r) if r.key in out else r  # a new entity: as it is
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(batches=st.lists(st.lists(records(), max_size=6), max_size=6))
def test_random_batches_load_as_the_pure_merge(
    make_store: Callable[[], Store], batches: list[list[EntityRecord]]
) -> None:
    store = make_store()
    for batch in batches:
        store.save(batch)
    expected = fold([r for batch in batches for r in batch])
    assert {r.key: r for r in store.load()} == expected
    for size in (1, 2, 7):  # pages in key order cover the same records once
        paged, after = [], None
        while True:
            page, after = store.load_page(after, size)
            paged += page
            if after is None:
                break
        assert [r.key for r in paged] == sorted(expected)
        assert {r.key: r for r in paged} == expected

    state = ActivityState()  # and the in-memory state restores the same records
    state.load(store.load())
    assert {(r.kind, r.id): r for r in (e.record() for e in state.all_entities())} == expected


def test_merge_is_idempotent_and_keeps_registers_monotonic() -> None:
    a = EntityRecord(kind="session", id="s", first_seen=5, last_seen=9, sources=(("input", 7),))
    b = EntityRecord(kind="session", id="s", first_seen=3, last_seen=8, sources=(("input", 6),))
    ab = merge(a, b)
    assert (ab.first_seen, ab.last_seen, ab.sources) == (3, 9, (("input", 7),))
    assert merge(ab, b) == ab and merge(ab, a) == ab
    with pytest.raises(ValueError, match="cannot merge"):
        merge(a, EntityRecord(kind="host", id="s", first_seen=1, last_seen=1))


def test_holds_latest_report_wins_and_long_ended_ones_are_dropped() -> None:
    old = EntityRecord(
        kind="session", id="s", first_seen=1, last_seen=1,
        holds=(("client:a", 10, 20), ("lease:L", 10, 0)),
    )  # fmt: skip
    late = EntityRecord(kind="session", id="s", first_seen=1, last_seen=1,
                        holds=(("lease:L", 5, 99),))  # fmt: skip
    assert merge(old, late).holds == (("client:a", 10, 20), ("lease:L", 10, 0))
    much_later = EntityRecord(
        kind="session", id="s", first_seen=1, last_seen=1,
        holds=(("lease:M", 20 + HOLD_GRACE_NS + 1, 0),),
    )  # fmt: skip
    # client:a ended at 20, over the grace before the latest report: gone; open-ended L stays.
    assert [k for k, _, _ in merge(old, much_later).holds] == ["lease:L", "lease:M"]


def test_every_record_field_is_a_column(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "s.db")
    store.close()
    db = sqlite3.connect(tmp_path / "s.db")
    columns = [row[1] for row in db.execute("PRAGMA table_info(entities)")]
    db.close()
    assert columns == list(RECORD_FIELDS)
