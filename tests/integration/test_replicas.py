"""Three ``lastactive serve`` processes on one real PostgreSQL (issue 13): one is killed, one
stalled past its lease; every transition reaches a watcher on each surviving replica (SSE and
gRPC) exactly once, the stalled one emits nothing after its lease, the dead one's sessions'
transitions come within the stated bound, and a watcher that reconnects to another replica
with its last event id sees no gap."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import grpc
import psycopg

from lastactive.collector.proto import query_pb2
from tests.helpers import Collector, last_input, metric, sse_events, wait_for

LEASE_S = 2.0
SESSIONS = [f"s{i}" for i in range(24)]
FIELDS = {("state", "active"), ("state", "idle"), ("hibernate", "true")}
EXPECTED = {("session", s, f, c) for s in SESSIONS for f, c in FIELDS} | {
    ("host", "h", f, c) for f, c in FIELDS
}


class SseWatcher:
    """Reads ``/v1/watch`` transitions in a thread; ``stop_after``: hang up after that many."""

    def __init__(self, url: str, last_event_id: str | None = None, stop_after: int = 0) -> None:
        self.got: list[tuple[str, tuple[str, str, str, str]]] = []
        self.ended = threading.Event()
        headers = {} if last_event_id is None else {"Last-Event-ID": last_event_id}
        self._req = urllib.request.Request(url, headers=headers)
        self._stop_after = stop_after
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            with urllib.request.urlopen(self._req, timeout=60) as resp:
                for event_id, name, d in sse_events(resp):
                    if name == "transition":
                        assert event_id is not None
                        self.got.append((event_id, (d["kind"], d["id"], d["field"], d["current"])))
                        if len(self.got) == self._stop_after:
                            return
        finally:
            self.ended.set()


class GrpcWatcher:
    def __init__(self, c: Collector) -> None:
        self.got: list[tuple[str, tuple[str, str, str, str]]] = []
        self._channel, stub = c.grpc_stub()
        self._call = stub.Watch(query_pb2.WatchRequest())
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        with contextlib.suppress(grpc.RpcError):  # cancelled by close()
            for event in self._call:
                if event.WhichOneof("event") == "transition":
                    t = event.transition
                    self.got.append((event.event_id, (t.kind, t.id, t.field, t.current)))

    def close(self) -> None:
        self._call.cancel()
        self._channel.close()


def _outbox(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return conn.execute("SELECT kind, id, field, current FROM outbox ORDER BY seq").fetchall()


def _owners(url: str) -> Counter[str | None]:
    with psycopg.connect(url) as conn:
        return Counter(r[0] for r in conn.execute("SELECT owner FROM shards WHERE expires > now()"))


def _split(owners: Counter[str | None]) -> bool:
    return set(owners) == {"r1", "r2", "r3"} and max(owners.values()) <= 22  # ceil(64 / 3)


def test_a_killed_and_a_stalled_replica_lose_and_repeat_nothing(
    postgres_url: str, tmp_path: Path
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 4\nhibernate_after = 8\n")
    replicas = [
        Collector(tmp_path / "unused.db", "--store", postgres_url, "--replica", f"r{n}",
                  "--lease", str(LEASE_S), "--policy", str(policy)).start()
        for n in (1, 2, 3)
    ]  # fmt: skip
    r1, r2, r3 = replicas
    grpc_watcher: GrpcWatcher | None = None
    try:
        wait_for(lambda: _split(_owners(postgres_url)), 30, "the shards split three ways")
        sse = SseWatcher(f"{r1.http}/v1/watch", stop_after=len(SESSIONS))  # hangs up midway
        grpc_watcher = GrpcWatcher(r2)
        for c in (r1, r2):
            wait_for(lambda c=c: metric(c, "lastactive_watch_subscribers") == 1, 10, "a watcher")
        for i, sid in enumerate(SESSIONS):  # acknowledged by each replica in turn
            last_input(replicas[i % 3], sid, 0, host="h")
        reported = time.time()
        assert r3.proc is not None and r2.proc is not None
        r3.proc.kill()  # dead: its shards come to the others once its leases expire
        r2.proc.send_signal(signal.SIGSTOP)  # stalled past its lease
        time.sleep(LEASE_S * 2.5)
        r2.proc.send_signal(signal.SIGCONT)
        wait_for(sse.ended.is_set, 30, "the SSE watcher's first part")
        resumed = SseWatcher(f"{r2.http}/v1/watch", last_event_id=sse.got[-1][0])
        wait_for(lambda: len(_outbox(postgres_url)) >= len(EXPECTED), 40, "every transition")
        done = time.time()
        time.sleep(1.5)  # nothing more comes
        rows = _outbox(postgres_url)
        assert Counter(rows).most_common(1)[0][1] == 1, "a transition emitted twice"
        assert set(rows) == EXPECTED
        # Hibernation was due 8 s after the reports; the dead replica's sessions came after its
        # leases expired (LEASE_S) and a renewal (LEASE_S / 3) at most, plus ticks.
        assert done - reported < 8 + LEASE_S * 4 / 3 + 2, done - reported
        wait_for(lambda: len(grpc_watcher.got) >= len(EXPECTED), 20, "the gRPC watcher")
        wait_for(lambda: len(sse.got) + len(resumed.got) >= len(EXPECTED), 20, "the SSE one")
        time.sleep(0.5)
        for got in (grpc_watcher.got, sse.got + resumed.got):
            assert Counter(t for _, t in got) == Counter(EXPECTED), "a gap or a duplicate"
        assert [i for i, _ in grpc_watcher.got] == [i for i, _ in sse.got + resumed.got]
        for sid in SESSIONS:  # what each replica acknowledged is there, on any replica
            s = r1.session(sid)
            assert s is not None and "input" in s["sources"], sid
    finally:
        if grpc_watcher is not None:
            grpc_watcher.close()
        for c in replicas:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.send_signal(signal.SIGCONT)
                c.stop()
