"""A fleet-wide watcher of a real ``lastactive serve`` at N sessions and R transitions/s.

    python benchmarks/watch.py [--sessions 10000 100000] [--transitions 1000] [--seconds 30]

For each N it writes a SQLite database of N idle sessions on 1000 hosts, starts
``lastactive serve`` on it with ``idle_after`` = :data:`IDLE_AFTER` s, and opens two
fleet-wide SSE watchers (``/v1/watch``, no filter), each in a process of its own: one reads
as fast as it can; one stops reading for :data:`PAUSE_S` s halfway (a watcher that was away).
Once both have their snapshot (its time is printed), a sender reports input for R/2 sessions
a second (OTLP/HTTP, 100 a request, each session once), so each session goes idle -> active
when its input arrives and active -> idle :data:`IDLE_AFTER` s later: R transitions a second
once the first ones go idle.

Printed per N: the session ``state`` transitions due (both edges of every session the sender
touched whose idle edge fell due before the end), how many each watcher received (missing,
duplicates), how late (received minus due: the input's time for ``active``, that plus
``idle_after`` for ``idle``; p50, p99, max), the resyncs and snapshots each was sent, the
collector's watch overflows and longest loop lag, and its lag probes over 50 ms (and the worst
lag bucket) while the two snapshots were sent and while the transitions ran. The baseline of
the same run is the engine's own lateness, each transition's ``at`` minus its due time: what
delivery adds is the difference. Issue 15's goal: every transition delivered, p99 <= 1 s late
at 100k sessions and 1,000 transitions/s, no resync storm. Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import http.client
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from serve_scale import (  # benchmarks/serve_scale.py
    Http,
    _lag,
    _over,
    _worst_bucket,
    last_time_request,
    percentile,
    save_fleet,
)

from lastactive.collector._record import EntityRecord

S = 1_000_000_000
HOSTS = 1000
IDLE_AFTER = 10
"""Seconds of no input after which a session goes idle (the policy the collector runs)."""
PAUSE_S = 10.0
"""How long the second watcher stops reading, halfway through."""
PER_REQUEST = 100
PROTO = {"Content-Type": "application/x-protobuf"}


def write_fleet(db: Path, n: int, now: int) -> None:
    """N sessions whose last input was 20 minutes ago (idle), on HOSTS hosts."""

    def sessions() -> Iterator[EntityRecord]:
        for i in range(n):
            t = now - 1200 * S - i * S // 1000
            yield EntityRecord(
                kind="session",
                id=f"session-{i:08d}",
                host_id=f"host-{i % HOSTS:04d}",
                first_seen=t - 60 * S,
                last_seen=t,
                sources=(("input", t),),
            )

    save_fleet(db, sessions())


def send(port: int, n: int, per_second: float, seconds: float) -> dict[str, int]:
    """Report input for ``per_second`` sessions a second (each once, in order) for ``seconds``;
    return session id -> the input's time (ns)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    interval = PER_REQUEST / per_second
    began = time.monotonic()
    sent: dict[str, int] = {}
    first = 0
    while time.monotonic() - began < seconds and first + PER_REQUEST <= n:
        t = time.time_ns()
        conn.request(
            "POST",
            "/v1/metrics",
            last_time_request(range(first, first + PER_REQUEST), t, ("input",)),
            PROTO,
        )
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        for i in range(first, first + PER_REQUEST):
            sent[f"session-{i:08d}"] = t
        first += PER_REQUEST
        delay = began + (first // PER_REQUEST) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    return sent


def watch(port: int, seconds: float, pause_at: float) -> None:
    """A fleet-wide SSE watcher (run as its own process): reads its snapshot, says "watching"
    and how long that took, then reads for ``seconds``; it stops reading for PAUSE_S at
    ``pause_at`` seconds (negative: never). Prints JSON: every session ``state``
    transition as ``[id, current, at ns, received ns]``, and the resyncs and snapshot pages."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", "/v1/watch")
    response = conn.getresponse()
    assert response.status == 200, response.status
    began = time.monotonic()
    snapshots = 0
    while True:  # the snapshot: the last page has "more": false
        line = response.readline()
        if line.startswith(b"data: "):
            snapshots += 1
            if not json.loads(line[6:])["more"]:
                break
    print(f"watching {time.monotonic() - began}", flush=True)
    began = time.monotonic()
    got: list[tuple[str, str, int, int]] = []
    resyncs = 0
    event = ""
    paused = pause_at < 0
    while time.monotonic() - began < seconds:
        if not paused and time.monotonic() - began >= pause_at:
            paused = True
            time.sleep(PAUSE_S)
        line = response.readline()
        if not line:
            break
        if line.startswith(b"event: "):
            event = line[7:].strip().decode()
        elif line.startswith(b"data: "):
            if event == "transition":
                t = json.loads(line[6:])
                if t["kind"] == "session" and t["field"] == "state":
                    at = datetime.fromisoformat(t["at"]).timestamp()
                    got.append((t["id"], t["current"], int(at * S), time.time_ns()))
            elif event == "resync":
                resyncs += 1
            elif event == "snapshot":
                snapshots += 1
    print(json.dumps({"got": got, "resyncs": resyncs, "snapshots": snapshots}))


def _metric(scrape: bytes, name: str) -> float:
    for line in scrape.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return float("nan")


def measure(n: int, transitions: float, seconds: float) -> dict[str, float]:
    """The figures at ``n`` sessions (times in ms)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "state.db"
        write_fleet(db, n, time.time_ns())
        policy = Path(tmp) / "policy.toml"
        policy.write_text(f"[defaults]\nidle_after = {IDLE_AFTER}\nhibernate_after = 86400\n")
        serve = subprocess.Popen(
            [sys.executable, "-m", "lastactive", "serve", "--db", str(db), "--policy",
             str(policy), "--http-port", "0", "--grpc-port", "0"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert serve.stdout is not None
        line = serve.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert match, line
        port = int(match[1])
        try:
            client = Http(port)
            while client.get("/readyz")[0] != 200:
                time.sleep(0.1)
            ready = _lag(Http(port))
            run_s = seconds + IDLE_AFTER + 5
            watchers = [
                subprocess.Popen(
                    [sys.executable, __file__, "--watch", str(port), str(run_s), str(pause)],
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for pause in (-1.0, seconds / 2)
            ]
            snapshot_s = 0.0
            for w in watchers:  # each has its snapshot before the sender starts
                assert w.stdout is not None
                word, took = w.stdout.readline().split()
                assert word == "watching", word
                snapshot_s = max(snapshot_s, float(took))
            snapshots = _lag(Http(port))
            began = time.time_ns()
            sent = send(port, n, transitions / 2, seconds)
            ended = time.time_ns()
            steady = _lag(Http(port))
            results = [json.loads(w.communicate()[0]) for w in watchers]
            scrape = Http(port).get("/metrics")[1]  # a new connection: the first went idle
            overflows = _metric(scrape, "lastactive_watch_resyncs_total")
            lag = _metric(scrape, "lastactive_event_loop_lag_max_seconds")
        finally:
            serve.terminate()
            serve.wait(60)
    idle_ns = IDLE_AFTER * S
    due = {(sid, "active"): t for sid, t in sent.items()}
    due.update({(sid, "idle"): t + idle_ns for sid, t in sent.items() if t + idle_ns < ended})
    both = began + idle_ns  # from here on sessions go idle as others go active
    figures: dict[str, float] = {
        "snapshot, both watchers (ms)": snapshot_s * 1000,
        "transitions due": len(due),
        "transitions/s once both edges run": sum(both <= t < ended for t in due.values())
        / ((ended - both) / S),
    }
    engine_late = []
    for name, result in zip(("reader", "paused 10 s"), results, strict=True):
        seen: set[tuple[str, str]] = set()
        late, duplicates = [], 0
        for sid, current, at, received in result["got"]:
            key = (sid, current)
            if key not in due:
                continue
            if key in seen:
                duplicates += 1
                continue
            seen.add(key)
            late.append((received - due[key]) / 1e6)
            if name == "reader":
                engine_late.append((at - due[key]) / 1e6)
        figures[f"{name}: missing"] = len(due) - len(seen)
        figures[f"{name}: duplicates"] = duplicates
        figures[f"{name}: late p50 (ms)"] = percentile(late, 0.5)
        figures[f"{name}: late p99 (ms)"] = percentile(late, 0.99)
        figures[f"{name}: late max (ms)"] = max(late, default=float("nan"))
        figures[f"{name}: resyncs"] = result["resyncs"]
        figures[f"{name}: snapshot pages"] = result["snapshots"]
    figures["baseline, engine at - due: p50 (ms)"] = percentile(engine_late, 0.5)
    figures["baseline, engine at - due: p99 (ms)"] = percentile(engine_late, 0.99)
    figures["watch resyncs (collector)"] = overflows
    figures["loop lag max, last 60 s (ms)"] = lag * 1000
    phases = (("snapshots", ready, snapshots), ("transitions", snapshots, steady))
    for phase, before, after in phases:
        figures[f"{phase}: lag probes > 50 ms"] = _over(before.lag, after.lag, 0.05)
        figures[f"{phase}: worst lag bucket (ms)"] = _worst_bucket(before.lag, after.lag) * 1000
    print(f"... {n} sessions done", flush=True)
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--watch":
        watch(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--transitions", type=float, default=1000.0, help="per second")
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    columns = [measure(n, args.transitions, args.seconds) for n in args.sessions]
    print(f"\nfleet-wide watchers at N sessions, {args.transitions:g} transitions/s")
    print(f"{'':40}" + "".join(f"{n:>12}" for n in args.sessions))
    for name in columns[0]:
        print(f"{name:40}" + "".join(f"{c[name]:12.1f}" for c in columns))


if __name__ == "__main__":
    main()
