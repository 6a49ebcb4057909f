"""The tracker's hot path next to a plain attribute write (and an OTel Counter.add), one run.

    python benchmarks/tracker_hot_path.py

Prints ns per call and the ratio to a plain attribute write measured in the same run.
"""

from __future__ import annotations

import timeit

from opentelemetry.sdk.metrics import MeterProvider

from lastactive.instrumentation import SessionTracker, Source

N = 2_000_000


class Plain:
    __slots__ = ("x",)

    def __init__(self) -> None:
        self.x = 0


def best(stmt: str, env: dict[str, object], number: int = N) -> float:
    """Best of 5, ns per call."""
    return min(timeit.repeat(stmt, globals=env, number=number, repeat=5)) / number * 1e9


def main() -> None:
    plain = Plain()
    tracker = SessionTracker("bench", quiet_after=5.0, on_wake=lambda: None)
    tracker.add_output(1)  # past the first-activity wake
    counter = MeterProvider().get_meter("bench").create_counter("bench")
    env = {
        "plain": plain,
        "tracker": tracker,
        "counter": counter,
        "Source": Source,
        "attrs": {"network.io.direction": "transmit"},
    }
    base_write = best("plain.x = 1", env)
    base_add = best("plain.x += 4096", env)
    rows = [
        ("plain attribute write (baseline)", base_write),
        ("plain attribute += n", base_add),
        ("tracker.add_output(4096)", best("tracker.add_output(4096)", env)),
        ("tracker.record(Source.PROMPT)", best("tracker.record(Source.PROMPT)", env)),
        ("tracker.alive(Source.PROCESS)", best("tracker.alive(Source.PROCESS)", env)),
        ("OTel Counter.add(4096, attrs)", best("counter.add(4096, attrs)", env, N // 10)),
    ]
    print(f"{'operation':36} {'ns/call':>9} {'x plain write':>14}")
    for name, ns in rows:
        print(f"{name:36} {ns:9.1f} {ns / base_write:14.1f}")


if __name__ == "__main__":
    main()
