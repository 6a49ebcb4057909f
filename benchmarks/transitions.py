"""Transition timing at 100,000 sessions: how late transitions fire, and the scheduler's CPU.

    python benchmarks/transitions.py [--sessions 100000] [--seconds 30]

Sessions' last activity is spread so their idle deadlines fall evenly over the first part of
the run (and their hibernation deadlines after); a busy fifth of them gets new output every
tick (the touches an ingest of 5-second exports produces). The engine ticks every TICK_S in
real time. Lateness is when a transition reached the caller minus its due time. The baseline,
measured in the same run, is what a tick would cost if it evaluated every session (a naive
poller).
"""

from __future__ import annotations

import argparse
import statistics
import time

from lastactive.collector._state import NANOS, ActivityState, Identity, Kind, view
from lastactive.collector._transitions import TICK_S, TransitionEngine
from lastactive.collector.policy import Policy, Rules, evaluate

SETUP_S = 10.0
"""Seconds allowed for creating, priming and the baseline scan before the first deadline."""
IDLE_AFTER = 10.0
HIBERNATE_AFTER = 20.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    n = args.sessions
    state = ActivityState()
    start = time.time_ns() + int(SETUP_S * NANOS)  # the run (and the first deadline) begins
    spread = int((args.seconds - HIBERNATE_AFTER) * NANOS)
    due_idle: dict[str, int] = {}
    busy = []
    for i in range(n):
        ents = state.resolve(Identity(session_id=f"s{i}", host_id=f"h{i % 100}"), start)
        if i % 5 == 0:
            busy.append(ents)
            continue
        last = start - int(IDLE_AFTER * NANOS) + (spread * i) // n + NANOS
        state.activity(ents, "output", last)
        due_idle[f"s{i}"] = last + int(IDLE_AFTER * NANOS)
    policy = Policy(Rules(idle_after=IDLE_AFTER, hibernate_after=HIBERNATE_AFTER))
    engine = TransitionEngine(state, policy, time.time_ns)

    began = time.perf_counter()
    engine.prime()
    prime_s = time.perf_counter() - began
    sessions = list(state.entities[Kind.SESSION].values())
    began = time.perf_counter()
    now = time.time_ns()
    for e in sessions:
        v = view(e, now)
        evaluate(v, policy.rules_for(v), now)
    scan_s = time.perf_counter() - began

    time.sleep(max(0.0, (start - time.time_ns()) / NANOS))
    lateness: list[float] = []
    cpu = 0.0
    deadline = time.monotonic() + args.seconds
    while time.monotonic() < deadline:
        time.sleep(TICK_S)
        t = time.time_ns()
        for ents in busy:  # ingest: new output on the busy fifth (not timed as scheduler)
            state.activity(ents, "output", t)
        c0 = time.process_time()
        transitions = engine.tick()
        cpu += time.process_time() - c0
        delivered = time.time_ns()
        for tr in transitions:
            if tr.field == "state" and tr.current == "idle" and tr.id in due_idle:
                lateness.append((delivered - due_idle[tr.id]) / NANOS)
    lateness.sort()
    p99 = lateness[min(len(lateness) - 1, int(0.99 * len(lateness)))]
    print(
        f"{n} sessions: {len(due_idle)} go idle during the run, {len(busy)} busy ones touched "
        f"every {TICK_S} s tick"
    )
    print(f"prime (evaluate all once at start): {prime_s:.2f} s")
    print(
        f"baseline: one scan evaluating every session: {scan_s * 1e3:.0f} ms "
        f"({scan_s / TICK_S:.1f} s of CPU per second at one scan per tick)"
    )
    print(
        f"idle transitions fired: {len(lateness)} of {len(due_idle)}; lateness median "
        f"{statistics.median(lateness) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, "
        f"max {lateness[-1] * 1e3:.0f} ms"
    )
    print(
        f"scheduler CPU: {cpu / args.seconds:.3f} s per second "
        f"({cpu / args.seconds / (scan_s / TICK_S):.3f}x the scan-every-tick baseline)"
    )


if __name__ == "__main__":
    main()
