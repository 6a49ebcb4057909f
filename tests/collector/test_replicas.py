"""Replicas on one PostgreSQL store (issue 13): shard leases, fenced emission, the outbox, the
change feed, takeover; in-process replicas (``InProcessCollector``) on a real server. Killed
and stalled replica processes are in ``tests/integration/test_replicas.py``."""

from __future__ import annotations

import asyncio
import random
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from lastactive.collector import _replica as replica_module
from lastactive.collector._ingest import Ingest
from lastactive.collector._pg_cluster import PostgresCluster
from lastactive.collector._record import EntityRecord
from lastactive.collector._replica import Replica
from lastactive.collector._shards import SHARDS, fair_share, shard_of
from lastactive.collector._state import VIEWS_SLICE, ActivityState, Kind, page_key
from lastactive.collector._transitions import DECISIONS_SLICE, Transition, TransitionField
from lastactive.collector.policy import Policy
from lastactive.collector.proto import query_pb2
from lastactive.collector.store import PostgresStore
from lastactive.conventions import (
    PROM_HOST_SESSIONS,
    PROM_REPLICA_ENTITIES,
    PROM_SESSIONS,
    PROM_SESSIONS_IDLE,
    PROM_SESSIONS_RECENT,
)
from tests.collector.test_decisions import _sse, hold_request
from tests.helpers import (
    PROTO,
    InProcessCollector,
    LoopTurns,
    last_input,
    metric,
    metrics_request,
    sse_events,
    sum_point,
    wait_for,
)

S = 1_000_000_000
T0 = 1_800_000_000 * S


def test_shard_of_is_the_stores_sql(postgres_url: str) -> None:
    """The store's generated ``shard`` column and :func:`shard_of` agree (a replica decides in
    memory which entities it evaluates, and reads its shards' rows by that column)."""
    store = PostgresStore(postgres_url)
    try:
        keys = [("session", f"s{i}") for i in range(300)] + [("host", "h/ü/€"), ("agent", "")]
        with store.connection() as conn:
            got = conn.execute(
                "SELECT k, i, (('x' || substr(md5(k || ':' || i), 1, 8))::bit(32)::int & 63) "
                "FROM unnest(%s::text[], %s::text[]) AS u (k, i)",
                ([k for k, _ in keys], [i for _, i in keys]),
            ).fetchall()
        assert [s for _, _, s in got] == [shard_of(k, i) for k, i in keys]
        assert len({s for _, _, s in got}) == SHARDS
    finally:
        store.close()


def _owners(url: str) -> Counter[str | None]:
    with psycopg.connect(url) as conn:
        return Counter(r[0] for r in conn.execute("SELECT owner FROM shards"))


def _outbox(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute(
            "SELECT seq, kind, id, field, previous, current FROM outbox ORDER BY seq"
        ).fetchall()


def test_leases_split_the_shards_and_fence_a_replica_past_its_lease(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    x, y = PostgresCluster(store, "x", 2.0), PostgresCluster(store, "y", 2.0)
    try:
        held_x, live = x.lease_shards({})
        assert (len(held_x), live) == (SHARDS, 1)
        held_y, live = y.lease_shards({})
        assert (held_y, live) == ({}, 2)  # all held: nothing to claim yet
        held_x, _ = x.lease_shards(held_x)  # x sees two live replicas: releases its excess
        assert len(held_x) == fair_share(2) == SHARDS // 2
        held_y, _ = y.lease_shards(held_y)
        assert len(held_y) == SHARDS // 2 and not set(held_x) & set(held_y)

        mine = next(i for i in range(1000) if shard_of("session", f"s{i}") in held_x)
        t = Transition(1, "session", f"s{mine}", None, TransitionField.STATE, "new", "active",
                       "first seen", None)  # fmt: skip
        active = ("session", f"s{mine}", "active:000", T0, False, 0.0, 0.0, 0)
        assert x.emit(held_x, [t], [active]) == set()
        assert [r[2:] for r in _outbox(postgres_url)] == [(f"s{mine}", "state", "new", "active")]

        # x stalls past its lease: y takes its shards; what x emits then is dropped.
        with store.connection() as conn:
            conn.execute("UPDATE shards SET expires = clock_timestamp() - interval '1 second' "
                         "WHERE owner = 'x'")  # fmt: skip
        late = Transition(2, "session", f"s{mine}", None, TransitionField.STATE, "active",
                          "idle", "idle", None)  # fmt: skip
        idle = ("session", f"s{mine}", "idle:000", T0, False, 0.0, 0.0, 0)
        assert x.emit(held_x, [late], [idle]) == set(held_x)
        assert len(_outbox(postgres_url)) == 1
        held_y, _ = y.lease_shards(held_y)
        assert len(held_y) == fair_share(2)  # x's heartbeat is still fresh: a fair share
        with store.connection() as conn:  # x is silent past its lease: no longer live
            conn.execute("UPDATE replicas SET seen = clock_timestamp() - interval '1 hour' "
                         "WHERE name = 'x'")  # fmt: skip
        held_y, live = y.lease_shards(held_y)
        assert (len(held_y), live) == (SHARDS, 1)
        # x wakes, claims again: its old epochs are not the new ones, so the old lease's
        # emission stays fenced even for a shard it holds again.
        stale = dict(held_x)
        with store.connection() as conn:
            conn.execute("UPDATE shards SET owner = 'x', epoch = epoch + 1, expires = "
                         "clock_timestamp() + interval '1 minute'")  # fmt: skip
        assert x.emit(stale, [late], []) == set(stale)
        assert len(_outbox(postgres_url)) == 1
    finally:
        store.close()


def test_replicas_emit_each_transition_once_and_every_watcher_gets_it(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two replicas share the shards; sessions reported to either go idle and due to
    hibernate: each transition is in the outbox once, and watchers on both replicas get all of
    them, in the same order with the same event ids. One replica leaves: the other takes its
    shards over and emits what comes due, without repeating what was emitted."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 60\n")
    now = [time.time_ns()]
    options: dict[str, Any] = {"policy": policy, "lease": 1.0, "flush_interval": 0.05}
    a = InProcessCollector(PostgresStore(postgres_url), clock=lambda: now[0], replica="a",
                           **options).start()  # fmt: skip
    b = InProcessCollector(PostgresStore(postgres_url), clock=lambda: now[0], replica="b",
                           **options).start()  # fmt: skip
    stopped = False
    try:
        wait_for(lambda: _owners(postgres_url) == {"a": 32, "b": 32}, 20, "the shards split")
        with urllib.request.urlopen(f"{a.http}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert 'lastactive_replica_shards{replica="a"} 32.0' in metrics
        assert metric(a, "lastactive_replicas_live") == 2
        sessions = [f"s{i}" for i in range(12)]
        expected = 2 * len(sessions) + 2  # session and host: new -> active, active -> idle
        got: dict[str, list[tuple[str | None, str, Any]]] = {}

        def watch(name: str, c: InProcessCollector) -> None:
            got[name] = _sse(f"{c.http}/v1/watch", {}, 1 + expected)

        watchers = [threading.Thread(target=watch, args=(n, c)) for n, c in (("a", a), ("b", b))]
        for w in watchers:
            w.start()
        for c in (a, b):
            wait_for(lambda c=c: metric(c, "lastactive_watch_subscribers") == 1, 10, "a watcher")
        now[0] = time.time_ns()  # the reports' times are real ones
        for i, sid in enumerate(sessions):
            last_input(a if i % 2 else b, sid, 0, host="h")
        wait_for(lambda: len(_outbox(postgres_url)) == len(sessions) + 1, 20, "new -> active")
        now[0] += 45 * S  # past idle_after, whenever in the last seconds the reports were made
        wait_for(lambda: len(_outbox(postgres_url)) == expected, 20, "idle")
        for w in watchers:
            w.join(20)
        assert got["a"][0][1] == got["b"][0][1] == "snapshot"
        assert got["a"][1:] == got["b"][1:]  # same transitions, same order, same event ids
        assert Counter((d["kind"], d["id"], d["current"]) for _, _, d in got["a"][1:]) == {
            **{("session", s, state): 1 for s in sessions for state in ("active", "idle")},
            ("host", "h", "active"): 1, ("host", "h", "idle"): 1,
        }  # fmt: skip

        a.stop()  # leaves: its shards go to b at b's next renewal
        stopped = True
        wait_for(lambda: _owners(postgres_url) == {"b": SHARDS}, 10, "b holds every shard")
        now[0] += 30 * S  # past hibernate_after
        total = expected + len(sessions) + 1  # + session and host: hibernate false -> true
        wait_for(lambda: len(_outbox(postgres_url)) >= total, 20, "hibernate due")
        time.sleep(1)  # nothing more comes
        rows = _outbox(postgres_url)
        assert len(rows) == total
        assert Counter(r[1:] for r in rows).most_common(1)[0][1] == 1  # none twice
        assert {r[2] for r in rows[expected:]} == {*sessions, "h"}
        assert {r[3:] for r in rows[expected:]} == {("hibernate", "false", "true")}
    finally:
        if not stopped:
            a.stop()
        b.stop()


def _replica_ingest(clock: Any) -> Ingest:
    state = ActivityState(started_at=T0 - 60 * S)
    state.additive_io = True
    return Ingest(state, clock)


def _commit(store: PostgresStore, ingest: Ingest, fails: bool) -> None:
    """A replica's commit, as its flusher makes it; one that ``fails`` puts it all back."""
    state = ingest.state
    records, streams, counted = (
        state.take_dirty(),
        state.take_dirty_streams(),
        state.take_io_counted(),
    )
    if fails:
        state.mark_dirty(records, streams)
        state.restore_io_counted(counted)
    else:
        assert store.save(records, streams, counted) == 0


def test_byte_streams_alternating_between_replicas_count_as_through_one(postgres_url: str) -> None:
    """Cumulative byte counters of 40 sessions, each point sent to one of two replicas at
    random (rises, flat stretches, resets, replays, points out of order), the replicas
    committing at the same time after every round (a fifth of the commits failing, to be made
    again with what came next round): the stored totals are what one process
    receiving the same points counts (issue 13: each replica counts from the last point *it*
    saw, so without counting against the stored last point a moved stream double-counts or
    loses bytes). Points never arrive out of order across a reset: there one process itself
    loses the old run's last rise."""
    rng = random.Random(13)
    store = PostgresStore(postgres_url)
    store.additive_io = True
    now = [T0]
    replicas = [_replica_ingest(lambda: now[0]) for _ in range(2)]
    one = Ingest(ActivityState(started_at=T0 - 60 * S), lambda: now[0])
    sessions = [f"bytes-{i}" for i in range(40)]
    value = dict.fromkeys(sessions, 0)
    start = dict.fromkeys(sessions, T0)
    fails = [False, False]
    try:
        for step in range(1, 31):
            now[0] = T0 + step * S
            arrivals: list[ExportMetricsServiceRequest] = []
            for sid in sessions:
                # The reporter restarted: a new run from 0 (not twice in a row: a replica's
                # commit fails for one round, and runs two resets back are not counted).
                if rng.random() < 0.1 and start[sid] < now[0] - 2 * S:
                    start[sid], value[sid] = now[0] - S // 2, 0
                for t in (now[0], now[0] + S // 4):  # two points, arriving in either order
                    value[sid] += rng.choice((0, 0, 1, 7, 1500))
                    point = sum_point(
                        value[sid], t, start[sid], **{"network.io.direction": "receive"}
                    )
                    arrivals.append(
                        metrics_request(
                            sid, host_id=f"h-{sid}", sums={"lastactive.session.io": [point]}
                        )
                    )
            rng.shuffle(arrivals)  # fmt: skip
            sent: list[tuple[int, ExportMetricsServiceRequest]] = []
            for req in arrivals:
                sent.append((rng.randrange(2), req))
                if rng.random() < 0.1:  # a retry of the same export, at either replica
                    sent.append((rng.randrange(2), req))
            for which, req in sent:
                replicas[which].metrics(req)
                one.metrics(req)
            fails = [rng.random() < 0.2 and not failed for failed in fails]
            committers = [
                threading.Thread(target=_commit, args=(store, r, f))
                for r, f in zip(replicas, fails, strict=True)
            ]
            for c in committers:
                c.start()
            for c in committers:
                c.join(30)
        for r in replicas:
            _commit(store, r, False)
        with store.connection() as conn:
            rows = conn.execute("SELECT id, input_bytes FROM entities WHERE kind = 'session'")
            stored = dict(rows.fetchall())
        expected = {sid: one.state.entities[Kind.SESSION][sid].input_bytes for sid in sessions}
        assert stored == expected
        assert sum(expected.values()) > 100_000
    finally:
        store.close()


def _indexed(url: str) -> dict[str, tuple[int | None, bool]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, deadline, held FROM emitted").fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def _pages(c: InProcessCollector, query: str) -> list[Any]:
    """Every page of ``/v1/sessions?{query}``, following the tokens."""
    pages, token = [], ""
    while True:
        status, body = c.get(f"/v1/sessions?{query}&page_token={token}")
        assert status == 200, body
        pages.append(body["sessions"])
        token = body["next_page_token"]
        if not token:
            return pages


def _watch_snapshot(c: InProcessCollector, query: str) -> list[Any]:
    """The snapshot a new SSE watcher of ``/v1/watch?{query}`` gets (its pages joined), in
    ``(kind, id)`` order."""
    states: list[Any] = []
    req = urllib.request.Request(f"{c.http}/v1/watch?{query}")
    with urllib.request.urlopen(req, timeout=10) as resp:
        for _, event, data in sse_events(resp):
            assert event == "snapshot", (event, data)
            states += data["states"]
            if not data["more"]:
                return sorted(states, key=lambda s: (s["kind"], s["id"]))
    raise AssertionError(f"the stream ended after {states}")


def _grpc_snapshot_ids(c: InProcessCollector, host_id: str) -> list[str]:
    channel, stub = c.grpc_stub()
    with channel:
        stream = stub.Watch(query_pb2.WatchRequest(host_id=host_id), timeout=10)
        ids: list[str] = []
        for event in stream:
            ids += [s.id for s in event.snapshot.states]
            if not event.snapshot.more:
                stream.cancel()
                return sorted(ids)
    raise AssertionError(f"the stream ended after {ids}")


def test_every_replica_answers_as_one_process_that_got_every_report(
    postgres_url: str, tmp_path: Path
) -> None:
    """Issue 13: ``/v1/decisions``, session lists and watch snapshots (HTTP and gRPC) on either
    replica equal one process's that got every report, while each replica got half of them
    and evaluates half of the shards: the shared deadline index and held flags, each candidate
    evaluated from its row; lists are walks of the store's recency index, snapshots of its
    primary key."""
    policy = tmp_path / "policy.toml"
    policy.write_text(
        "[defaults]\nidle_after = 30\nhibernate_after = 60\n"
        "[[overrides]]\nmatch = { session_prefix = 'keep-' }\nhibernate_after = 3600\n"
    )
    now = [time.time_ns()]
    options: dict[str, Any] = {"policy": policy, "clock": lambda: now[0], "flush_interval": 0.05}
    one = InProcessCollector(**options).start()
    a = InProcessCollector(PostgresStore(postgres_url), replica="a", lease=1.0, **options).start()
    b = InProcessCollector(PostgresStore(postgres_url), replica="b", lease=1.0, **options).start()
    try:
        wait_for(lambda: _owners(postgres_url) == {"a": 32, "b": 32}, 20, "the shards split")
        now[0] = time.time_ns()  # the reports' times are real ones
        sessions = [f"{'keep-' if i % 7 == 3 else 's'}{i}" for i in range(24)]
        for i, sid in enumerate(sessions):  # a host's sessions go to both replicas
            for c in (one, a if i % 2 else b):
                last_input(c, sid, 5 * i, host=f"h{i % 5}", now=now[0])
        until = now[0] / S + 200
        for c in (one, a):
            hold = hold_request("s4", "lease", "l1", until).SerializeToString()
            assert c.post("/v1/logs", hold, PROTO)[0] == 200
        entities = len(sessions) + 5 + 1  # + the hosts, + h9 (the hold's)
        wait_for(lambda: len(_indexed(postgres_url)) == entities, 20, "every entity indexed")
        wait_for(lambda: _indexed(postgres_url)["s4"][1], 20, "the hold indexed")
        for query in ("limit=5", "limit=4&host=h2", "limit=3&trusted_only=true", "limit=0"):
            expected_pages = _pages(one, query)
            assert _pages(a, query) == _pages(b, query) == expected_pages, query
        assert len(_pages(one, "limit=5")) == 5  # 24 sessions
        for c in (a, b):
            channel, stub = c.grpc_stub()
            with channel:
                resp = stub.ListSessions(query_pb2.ListSessionsRequest(limit=7), timeout=10)
            assert [s.id for s in resp.sessions] == [s["id"] for s in one.get(
                "/v1/sessions?limit=7")[1]["sessions"]]  # fmt: skip
            assert c.get("/v1/sessions?page_token=bad")[0] == 400
        whole: list[dict[str, Any]] = []
        for step in (0, 40, 30, 100, 150):  # idle, due, the hold ends, everything due
            now[0] += step * S
            for query in ("?within=0", "?within=3600&limit=3", "?limit=1", ""):
                expected = one.get(f"/v1/decisions{query}")
                assert expected[0] == 200
                assert a.get(f"/v1/decisions{query}") == expected, (step, query)
                assert b.get(f"/v1/decisions{query}") == expected, (step, query)
            whole.append(expected[1])
            for query in ("", "host=h2", "session=s4", "session=s4&host=h1", "host=nope"):
                expected_states = _watch_snapshot(one, query)
                assert _watch_snapshot(a, query) == expected_states, (step, query)
                assert _watch_snapshot(b, query) == expected_states, (step, query)
            assert len(expected_states) == 0 and len(_watch_snapshot(one, "")) == entities
            assert _grpc_snapshot_ids(a, "h2") == _grpc_snapshot_ids(one, "h2") == [
                "h2", "keep-17", "s12", "s2", "s22", "s7"]  # fmt: skip
            for c in (a, b):
                channel, stub = c.grpc_stub()
                with channel:
                    resp = stub.Decisions(query_pb2.DecisionsRequest(limit=1), timeout=10)
                assert [d.id for d in resp.hibernate] == [d["id"] for d in whole[-1]["hibernate"]][
                    :1
                ]
                assert [d.id for d in resp.held] == [d["id"] for d in whole[-1]["held"]][:1]
        ids = [{d["id"] for d in body["hibernate"]} for body in whole]
        assert "s4" in {d["id"] for d in whole[0]["held"]}
        assert "s20" in ids[0] and "s2" not in ids[0]  # input 100 s ago, 10 s ago
        assert "s2" in ids[2] and "s4" not in ids[2]  # 80 s; s4 still held
        assert "s4" in ids[4] and not any(i.startswith("keep-") for i in ids[4])
    finally:
        for c in (a, b, one):
            c.stop()


def test_session_pages_from_the_store_are_those_of_memory(postgres_url: str) -> None:
    """A replica's walk of the store's recency index (``Replica.sessions``) gives the pages the
    in-memory index gives, on random sessions: engagement from trusted and untrusted sources
    or none, tied times, several hosts; every page size, trusted or not, paged by key."""
    rng = random.Random(13)
    records = []
    for i in range(300):
        sources = {}
        for source in rng.sample(
            ["input", "prompt", "user", "output", "process"], rng.randint(0, 3)
        ):
            sources[source] = T0 + rng.choice([0, 1, 2, rng.randint(0, 10**6)]) * S
        first = T0 - rng.choice([0, 5, rng.randint(0, 100)]) * S
        records.append(EntityRecord(
            kind="session", id=f"s{i:03}", host_id=f"h{i % 4}", first_seen=first,
            last_seen=first + rng.choice([0, 7, rng.randint(0, 10**6)]) * S,
            sources=tuple(sorted(sources.items())),
        ))  # fmt: skip
    store = PostgresStore(postgres_url)
    try:
        assert store.save(records, []) == 0
        memory = ActivityState()
        memory.load(records)
        replica = Replica(PostgresCluster(store, "r", 1.0), ActivityState(), lambda: T0)
        now = T0 + 2 * 10**6 * S

        async def walk(host: str | None, trusted: bool, size: int) -> None:
            after = None
            while True:
                expected = memory.sessions(now, host, size, trusted, after)
                got = await replica.sessions(now, host, size, trusted, after)
                assert [v.id for v in got] == [v.id for v in expected], (host, trusted, size)
                if len(expected) < size:
                    return
                after = page_key(expected[-1])

        async def snapshot(host: str | None, session: str | None) -> list[list[str]]:
            pages = replica.snapshot_pages(Policy(), host, session, size=7)
            return [[s.view.id for s in page] async for page in pages]

        async def main() -> None:
            for host in (None, "h1"):
                for trusted in (False, True):
                    for size in (1, 7, 64, 1000):
                        await walk(host, trusted, size)
            for host in (None, "h1"):  # watch snapshots: each entity once, in pages
                pages = await snapshot(host, None)
                ids = sorted(r.id for r in records if host in (None, r.host_id))
                assert [i for p in pages for i in p] == ids
                assert [len(p) for p in pages] == [7] * (len(ids) // 7) + [len(ids) % 7]
            assert await snapshot("h1", "s005") == [["s005"]]
            assert await snapshot("h2", "s005") == await snapshot(None, "nope") == [[]]

        asyncio.run(main())
    finally:
        store.close()


def test_the_owner_sees_the_bytes_another_replica_received(postgres_url: str) -> None:
    """A session's output arrives at the replica that does not evaluate it: the owner's rate
    window follows the stored totals, so the runaway transition is emitted (by the owner,
    once) as one process would emit it; the owner publishes its rates as they move, so the
    other replica answers the same rate (within ``RATE_SLACK``) and runaway, and both see the
    rate fall to 0 once the bytes stop."""
    now = [time.time_ns()]
    options: dict[str, Any] = {"clock": lambda: now[0], "flush_interval": 0.05, "lease": 1.0}
    a = InProcessCollector(PostgresStore(postgres_url), replica="a", **options).start()
    b = InProcessCollector(PostgresStore(postgres_url), replica="b", **options).start()
    try:
        wait_for(lambda: _owners(postgres_url) == {"a": 32, "b": 32}, 20, "the shards split")
        with psycopg.connect(postgres_url) as conn:
            owned_by_a = {r[0] for r in conn.execute("SELECT shard FROM shards WHERE owner = 'a'")}
        sid = next(f"s{i}" for i in range(1000) if shard_of("session", f"s{i}") in owned_by_a)
        start, value = now[0], 0
        for i in range(12):  # 40 MiB a second, for 12 s of the collectors' clock
            now[0] += S
            value += 40 << 20
            point = sum_point(value, now[0], start, **{"network.io.direction": "transmit"})
            req = metrics_request(sid, host_id="h", sums={"lastactive.session.io": [point]})
            assert b.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200
            if i == 0:  # a follows the row from here: what comes later is a rise
                wait_for(lambda: any(r[2] == sid for r in _outbox(postgres_url)), 20, "a's row")

        def runaway() -> list[Any]:
            return [r for r in _outbox(postgres_url) if r[2:] == (sid, "runaway", "false", "true")]

        wait_for(runaway, 20, "the owner finds the session runaway")
        assert len(runaway()) == 1
        # The owner publishes its rates: b answers as a does (runaway, within RATE_SLACK).
        owner, other = a.session(sid), b.session(sid)
        assert owner is not None and other is not None
        assert owner["runaway"] and other["runaway"], other["runaway_reason"]
        rate = owner["output_bytes_per_second"]
        assert 0.9 * rate <= other["output_bytes_per_second"] <= rate / 0.9 and rate > 10 << 20
        assert _watch_snapshot(b, f"session={sid}")[0]["runaway"]
        now[0] += 31 * S  # the bytes stopped: the rate decays to 0, on every replica

        def calm(c: InProcessCollector) -> bool:
            got = c.session(sid)
            return got is not None and not got["runaway"] and got["output_bytes_per_second"] == 0

        wait_for(lambda: calm(a) and calm(b), 20, "both find the rate 0")
        wait_for(lambda: [r for r in _outbox(postgres_url) if r[2:4] == (sid, "runaway")][-1][
            4:] == ("true", "false"), 20, "the owner emits runaway true -> false")  # fmt: skip
        assert not _watch_snapshot(b, f"session={sid}")[0]["runaway"]
    finally:
        a.stop()
        b.stop()


def _in_memory(c: InProcessCollector) -> int:
    """The replica's ``lastactive_replica_entities``."""
    with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as resp:
        for family in text_string_to_metric_families(resp.read().decode()):
            if family.name == PROM_REPLICA_ENTITIES:
                return int(family.samples[0].value)
    raise AssertionError(f"{PROM_REPLICA_ENTITIES} not exposed")


def _shards_of(url: str, owner: str) -> set[int]:
    with psycopg.connect(url) as conn:
        return {r[0] for r in conn.execute("SELECT shard FROM shards WHERE owner = %s", (owner,))}


def _stored_of(url: str, owner: str) -> set[str]:
    """The ids of the stored entities whose shard ``owner`` holds."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT e.id FROM entities e JOIN shards s ON s.shard = e.shard WHERE s.owner = %s",
            (owner,),
        ).fetchall()
    return {r[0] for r in rows}


def test_a_replica_keeps_what_it_owns_and_what_it_is_sent_lately(postgres_url: str) -> None:
    """Issue 13, "memory per replica bounded by what it owns": what a replica is sent (or asked
    about) and does not own is evicted a minute after its last use, once committed, unless a
    hold stands on it; a later report makes it anew, and the store merges it as before."""
    now = [time.time_ns()]
    options: dict[str, Any] = {"clock": lambda: now[0], "flush_interval": 0.05}
    a = InProcessCollector(PostgresStore(postgres_url), replica="a", lease=1.0, **options).start()
    b = InProcessCollector(PostgresStore(postgres_url), replica="b", lease=1.0, **options).start()
    try:
        wait_for(lambda: _owners(postgres_url) == {"a": 32, "b": 32}, 20, "the shards split")
        now[0] = time.time_ns()
        sessions = [f"m{i}" for i in range(40)]
        for sid in sessions:  # all to a, as a balancer sends a host's exports to one replica
            last_input(a, sid, 0, host="mh", now=now[0])
        held = next(s for s in sessions if shard_of("session", s) not in _shards_of(
            postgres_url, "a"))  # fmt: skip
        hold = hold_request(held, "lease", "l1", 0).SerializeToString()
        assert a.post("/v1/logs", hold, PROTO)[0] == 200  # until released
        wait_for(lambda: len(_stored_of(postgres_url, "a") | _stored_of(postgres_url, "b")) == 42,
                 20, "every entity committed")  # fmt: skip
        assert _in_memory(a) == 42  # 40 sessions, mh, h9 (the hold's host)
        owned = _stored_of(postgres_url, "a")
        assert 0 < len(owned) < 42
        kept = {held, "h9"}  # the hold stands on the session and its host

        def a_minute_later() -> bool:  # noted at a's next tick: a minute after that
            now[0] += 61 * S
            return _in_memory(a) == len(owned | kept)

        wait_for(a_minute_later, 10, "the others evicted")  # a keeps its own and the held
        assert _in_memory(b) == len(_stored_of(postgres_url, "b"))  # loaded its shards only

        other = next(s for s in sessions if s not in owned and s != held)
        assert a.session(other)["sources"]["input"] == b.session(other)["sources"]["input"]  # type: ignore[index]
        assert _in_memory(a) == len(owned | kept) + 1  # read: in memory for a minute
        first_seen = b.session(other)["first_seen"]  # type: ignore[index]
        last_input(a, other, 0, host="mh", now=now[0])  # made anew on a; merged in the store
        wait_for(lambda: b.session(other)["last_active"] == a.session(other)["last_active"],  # type: ignore[index]
                 10, "the new report committed")  # fmt: skip
        assert b.session(other)["first_seen"] == first_seen  # type: ignore[index]
        wait_for(a_minute_later, 10, "evicted again")
    finally:
        for c in (a, b):
            c.stop()


FLEET_SERIES = (PROM_SESSIONS, PROM_HOST_SESSIONS, PROM_SESSIONS_RECENT, PROM_SESSIONS_IDLE)


def _fleet_series(*collectors: InProcessCollector) -> Counter[tuple[Any, ...]]:
    """The fleet series of ``collectors``' ``/metrics`` (by sample name and labels), summed
    over them as a dashboard's ``sum by`` sums replicas."""
    total: Counter[tuple[Any, ...]] = Counter()
    for c in collectors:
        with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as resp:
            for family in text_string_to_metric_families(resp.read().decode()):
                if family.name in FLEET_SERIES:
                    for sample in family.samples:
                        total[(sample.name, *sorted(sample.labels.items()))] += sample.value
    return +total  # without the zeros


def test_the_replicas_fleet_series_sum_to_one_processs(postgres_url: str, tmp_path: Path) -> None:
    """Issue 13, "the Grafana fleet dashboard sums replicas": each replica's ``/metrics``
    counts the sessions of its shards only (also those another replica was sent), so the
    replicas' sessions by state, per host, recent per class and the idle histogram sum to
    what one process that got every report shows; still so after a third replica joins and
    the shards move."""
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 30\nhibernate_after = 600\n")
    now = [time.time_ns()]
    options: dict[str, Any] = {"policy": policy, "clock": lambda: now[0], "flush_interval": 0.05}
    one = InProcessCollector(**options).start()
    replicas = [
        InProcessCollector(PostgresStore(postgres_url), replica=name, lease=1.0, **options).start()
        for name in ("a", "b")
    ]
    try:
        wait_for(lambda: _owners(postgres_url) == {"a": 32, "b": 32}, 20, "the shards split")
        now[0] = time.time_ns()
        for i in range(30):  # each to one replica, whatever its shard; idle from 0 to 10 min
            for c in (one, replicas[i % 2]):
                last_input(c, f"s{i}", 20 * i, host=f"h{i % 4}", now=now[0])
        expected = wait_for(
            lambda: (f := _fleet_series(one))[("lastactive_sessions", ("state", "idle"))] == 28
            and f,
            20, "one process evaluated them",
        )  # fmt: skip
        assert expected[("lastactive_sessions_idle_seconds_count",)] == 30
        wait_for(lambda: _fleet_series(*replicas) == expected, 20, "the replicas sum to one")
        replicas.append(
            InProcessCollector(PostgresStore(postgres_url), replica="c", lease=1.0, **options)
        )
        replicas[-1].start()
        wait_for(lambda: (o := _owners(postgres_url)).keys() == {"a", "b", "c"}
                 and max(o.values()) == fair_share(3), 20, "the shards split 3 ways")  # fmt: skip
        wait_for(lambda: _fleet_series(*replicas) == expected, 20, "the three sum to one")
    finally:
        for c in (*replicas, one):
            c.stop()


def test_a_replica_reads_pages_and_evaluates_them_a_slice_at_a_time(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page of 600 sessions from the store is made into views VIEWS_SLICE a slice, and the
    300 held up (a lease each) DECISIONS_SLICE a slice, the loop turning between (issue 15: a
    page of 10,000 rows held it in one piece); the answers are whole."""
    n = 600
    records = [
        EntityRecord(
            kind="session", id=f"s{i:03}", host_id="h", first_seen=T0, last_seen=T0 + i * S,
            sources=(("input", T0 + i * S),), holds=(("lease:l", T0, 0),) if i < 300 else (),
        )
        for i in range(n)
    ]  # fmt: skip
    store = PostgresStore(postgres_url)
    try:
        assert store.save(records, []) == 0
        cluster = PostgresCluster(store, "r", 60.0)
        held, _ = cluster.lease_shards({})
        assert len(held) == SHARDS
        emitted = [("session", f"s{i:03}", "", None, True, 0.0, 0.0, 0) for i in range(300)]
        assert cluster.emit(held, [], emitted) == set()
        replica = Replica(cluster, ActivityState(), lambda: T0)
        turns = LoopTurns()
        viewed_at: list[int] = []  # the turn of each view made
        made = replica_module.view

        def counted(*args: Any, **kwargs: Any) -> Any:
            viewed_at.append(turns.count)
            return made(*args, **kwargs)

        monkeypatch.setattr(replica_module, "view", counted)

        async def main() -> tuple[list[str], list[str]]:
            async with turns:
                page = await replica.sessions(T0 + n * S, None, n, False, None)
                decided = await replica.decisions(Policy(), T0 + n * S, 0, None)
            return [v.id for v in page], [d.view.id for d in decided.held]

        page, held_ids = asyncio.run(main())
        assert page == [f"s{i:03}" for i in reversed(range(n))]
        assert sorted(held_ids) == [f"s{i:03}" for i in range(300)]
        assert len(viewed_at) == n + 300
        per_turn = Counter(viewed_at[:n]).values(), Counter(viewed_at[n:]).values()
        assert max(per_turn[0]) <= VIEWS_SLICE and max(per_turn[1]) <= DECISIONS_SLICE
    finally:
        store.close()
