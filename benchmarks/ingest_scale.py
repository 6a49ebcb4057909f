"""Ingest against a bare parse + walk of the same bytes, as state grows from 0 to 1M sessions.

    python benchmarks/ingest_scale.py [--sessions 10000 100000 1000000] [--own-reporters]

One core, in-process, one run. The fleet grows by OTLP metric requests each reporting 1000 new
sessions (five points per session: three ``lastactive.source.last_time`` gauge points and two
cumulative ``lastactive.session.io`` counter points), in one resource whose points name their
session, or with ``--own-reporters`` a resource per session naming it with a
``service.instance.id`` of its own: how instrumented processes report, each a reporter whose
clock the collector keeps. At each size N it then times, on
requests to existing sessions picked at random (times and counter values rising):

* **large batches**: requests of 1000 sessions x 5 = 5000 points (each repetition's rate is
  printed too, first and last: a rate that falls between repetitions shows state growing in
  the wrong place);
* **small requests**: 1 session x 5 points each (one reporter's export).

It also prints the process's RSS per session once the fleet has grown to N, over its RSS
before (what a session reported this way costs: entity, gauges, counter streams, rate windows).

Each is measured on three paths over the very same serialized bodies:

* the **baseline**, a bare parse + walk: ``ExportMetricsServiceRequest.FromString`` and a walk
  that reads every resource's and data point's attributes into a dict, each point's time and
  value (the least any Python consumer of OTLP does);
* ``Ingest.metrics`` alone (parse included);
* what ``serve`` does on its event loop per request: the parse, ``Ingest.metrics``, the
  transition engine's tick and the flusher's snapshot of what changed (the store's write, in
  its own thread, and the HTTP/gRPC framing are not included).

Issue 15's goal: ingest >= 0.5x the bare parse + walk for large batches and small requests,
steady from 0 to 1M sessions. Nothing here asserts; it prints.
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import psutil
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2

from lastactive.collector._freeze import freeze_survivors
from lastactive.collector._ingest import Ingest
from lastactive.collector._state import ActivityState
from lastactive.collector._transitions import TransitionEngine
from lastactive.collector.policy import Policy

S = 1_000_000_000
MS = 1_000_000
HOSTS = 1000
PER_BATCH = 1000
"""Sessions in a large request (5 points each)."""
LARGE_REPS = 10
SMALL_REPS = 2000
CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE


def _kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _metrics(sessions: list[list[KeyValue]], t: int, t0: int) -> list[metrics_pb2.Metric]:
    """The two metrics of ``sessions`` (each: the attributes its points carry besides their
    source or direction): per session three ``lastactive.source.last_time`` gauge points at
    ``t`` and two cumulative byte counter points started at ``t0``, rising with ``t``."""
    gauge, io = [], []
    for attrs in sessions:
        for src in ("input", "output", "process"):
            gauge.append(
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t,
                    as_double=t / S,
                    attributes=[*attrs, _kv("lastactive.source", src)],
                )
            )
        for direction, per_ms in (("receive", 1), ("transmit", 100)):
            io.append(
                metrics_pb2.NumberDataPoint(
                    time_unix_nano=t,
                    start_time_unix_nano=t0,
                    as_int=(t - t0) // MS * per_ms,
                    attributes=[*attrs, _kv("network.io.direction", direction)],
                )
            )
    return [
        metrics_pb2.Metric(
            name="lastactive.source.last_time", gauge=metrics_pb2.Gauge(data_points=gauge)
        ),
        metrics_pb2.Metric(
            name="lastactive.session.io",
            sum=metrics_pb2.Sum(
                data_points=io, is_monotonic=True, aggregation_temporality=CUMULATIVE
            ),
        ),
    ]


def _ids(i: int) -> list[KeyValue]:
    return [_kv("session.id", f"session-{i:08d}"), _kv("host.id", f"host-{i % HOSTS:04d}")]


def request(sessions: list[int], t: int, t0: int, own_reporters: bool = False) -> bytes:
    """One export about ``sessions`` at ``t`` (ns): per session three timestamp gauge points
    and two cumulative byte counter points started at ``t0``, rising with ``t``. One resource
    naming the sessions on each point, or (``own_reporters``) a resource per session naming
    it, as each instrumented process reports (its own ``service.instance.id``: a reporter
    clock per session)."""
    scope = {"name": "lastactive"}
    if not own_reporters:
        metrics = _metrics([_ids(i) for i in sessions], t, t0)
        resources = [
            metrics_pb2.ResourceMetrics(
                resource={"attributes": [_kv("service.name", "bench")]},
                scope_metrics=[metrics_pb2.ScopeMetrics(scope=scope, metrics=metrics)],
            )
        ]
    else:
        resources = [
            metrics_pb2.ResourceMetrics(
                resource={
                    "attributes": [
                        _kv("service.name", "bench"),
                        _kv("service.instance.id", f"instance-{i:08d}"),
                        *_ids(i),
                    ]
                },
                scope_metrics=[
                    metrics_pb2.ScopeMetrics(scope=scope, metrics=_metrics([[]], t, t0))
                ],
            )
            for i in sessions
        ]
    return ExportMetricsServiceRequest(resource_metrics=resources).SerializeToString()


def bare(body: bytes) -> int:
    """The baseline: parse ``body`` and walk it (every attribute into a dict, each point's time
    and value); returns the points walked."""
    n = 0
    walked = []  # what the walk read, kept until the resource is done
    for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
        rattrs = {kv.key: kv.value.string_value for kv in rm.resource.attributes}
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data")
                if kind is None:
                    continue
                for p in getattr(m, kind).data_points:
                    attrs = {kv.key: kv.value.string_value for kv in p.attributes}
                    value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                    walked.append((rattrs, attrs, p.time_unix_nano, value))
                    n += 1
        walked.clear()
    return n


class Fleet:
    """The collector's core on a fake clock (ns), fed serialized requests."""

    def __init__(self, t0: int) -> None:
        self.now = t0
        self.state = ActivityState(started_at=t0)
        self.ingest = Ingest(self.state, lambda: self.now)
        self.engine = TransitionEngine(self.state, Policy(), lambda: self.now)

    def ingest_only(self, body: bytes) -> None:
        self.ingest.metrics(ExportMetricsServiceRequest.FromString(body))

    def settle(self) -> None:
        """Evaluate and snapshot what was touched (untimed)."""
        self.engine.tick()
        self.state.take_dirty()
        self.state.take_dirty_streams()

    def serve_path(self, body: bytes) -> None:
        self.ingest.metrics(ExportMetricsServiceRequest.FromString(body))
        self.engine.tick()
        self.state.take_dirty()
        self.state.take_dirty_streams()


def _rate(fn: Callable[[bytes], object], bodies: list[bytes], points: int) -> float:
    began = time.process_time()
    for body in bodies:
        fn(body)
    return points / (time.process_time() - began)


def figures_at(
    fleet: Fleet, n: int, t0: int, rng: random.Random, own_reporters: bool
) -> dict[str, float]:
    """Points per CPU-second of each path at ``n`` sessions."""
    out: dict[str, float] = {}
    for shape, per, reps in (("large", PER_BATCH, LARGE_REPS), ("small", 1, SMALL_REPS)):
        sets = []
        for _ in range(3):  # one set per path, each to its own sessions' rising values
            bodies = []
            for _ in range(reps):
                fleet.now += MS
                sessions = [rng.randrange(n) for _ in range(per)]
                bodies.append(request(sessions, fleet.now, t0, own_reporters))
            sets.append(bodies)
        fleet.now += S
        points = per * 5 * reps
        out[f"{shape}: bare parse + walk (baseline)"] = base = _rate(bare, sets[0], points)
        out[f"{shape}: Ingest.metrics"] = _rate(fleet.ingest_only, sets[1], points)
        out[f"{shape}: x baseline"] = out[f"{shape}: Ingest.metrics"] / base
        fleet.settle()  # what Ingest alone touched is not the serve path's to evaluate
        if shape == "large":
            reps_rates = [_rate(fleet.serve_path, [b], per * 5) for b in sets[2]]
            out[f"{shape}: serve's loop path"] = points / sum(per * 5 / r for r in reps_rates)
            out[f"{shape}: serve's loop path, first rep"] = reps_rates[0]
            out[f"{shape}: serve's loop path, last rep"] = reps_rates[-1]
        else:
            out[f"{shape}: serve's loop path"] = _rate(fleet.serve_path, sets[2], points)
        out[f"{shape}: serve's loop path x baseline"] = out[f"{shape}: serve's loop path"] / base
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument(
        "--own-reporters",
        action="store_true",
        help="a resource per session with its own service.instance.id (as instrumented "
        "processes report), not one resource for the whole batch",
    )
    args = ap.parse_args()
    t0 = time.time_ns() - 86400 * S
    process = psutil.Process()
    gc.collect()
    empty_rss = process.memory_info().rss
    fleet = Fleet(t0)
    rng = random.Random(1)
    columns: list[dict[str, float]] = []
    have = 0
    for n in args.sessions:
        grow_cpu, points = 0.0, 0
        while have < n:
            fleet.now += MS
            body = request(
                list(range(have, min(n, have + PER_BATCH))), fleet.now, t0, args.own_reporters
            )
            began = time.process_time()
            fleet.serve_path(body)
            grow_cpu += time.process_time() - began
            points += 5 * (min(n, have + PER_BATCH) - have)
            have = min(n, have + PER_BATCH)
        freeze_survivors()  # as serve does after each full collection
        figures = {
            "growing: new sessions, serve's loop path": points / grow_cpu if grow_cpu else 0.0,
            "RSS per session over the empty process (B)": (process.memory_info().rss - empty_rss)
            / n,
        }
        figures.update(figures_at(fleet, n, t0, rng, args.own_reporters))
        columns.append(figures)
        print(f"... {n} sessions", flush=True)
    gc.collect()
    print("\ndata points per CPU-second at N sessions (x baseline: the bare parse + walk)")
    print(f"{'':42}" + "".join(f"{n:>12}" for n in args.sessions))
    for name in columns[0]:
        cells = "".join(
            f"{c[name]:12.2f}" if name.endswith("baseline") else f"{c[name]:12.0f}" for c in columns
        )
        print(f"{name:42}{cells}")


if __name__ == "__main__":
    main()
