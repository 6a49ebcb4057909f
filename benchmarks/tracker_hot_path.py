"""The tracker's hot path next to its floor and a plain attribute write (and an OTel
Counter.add), one run.

    python benchmarks/tracker_hot_path.py

Prints ns per call, the ratio to a plain attribute write and to the floor of ``record()``: the
least a method can do to note an activity (read the clock, store the time in a dict under the
source). Issue 15's goal: ``record()`` within 1.5x of that floor.
"""

from __future__ import annotations

import time
import timeit

from opentelemetry.sdk.metrics import MeterProvider

from lastactive.instrumentation import SessionTracker, Source

N = 2_000_000


class Plain:
    __slots__ = ("x",)

    def __init__(self) -> None:
        self.x = 0


class Floor:
    """The minimal "read clock, store in dict" method ``record()`` is compared with."""

    __slots__ = ("_clock", "times")

    def __init__(self) -> None:
        self._clock = time.time
        self.times: dict[str, float] = {}

    def record(self, source: str) -> None:
        self.times[source] = self._clock()


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
        "floor": Floor(),
        "tracker": tracker,
        "counter": counter,
        "Source": Source,
        "attrs": {"network.io.direction": "transmit"},
    }
    base_write = best("plain.x = 1", env)
    base_add = best("plain.x += 4096", env)
    floor = best("floor.record(Source.PROMPT)", env)
    rows = [
        ("plain attribute write (baseline)", base_write),
        ("plain attribute += n", base_add),
        ("floor: read clock, store in dict", floor),
        ("tracker.add_output(4096)", best("tracker.add_output(4096)", env)),
        ("tracker.record(Source.PROMPT)", best("tracker.record(Source.PROMPT)", env)),
        ("tracker.alive(Source.PROCESS)", best("tracker.alive(Source.PROCESS)", env)),
        ("OTel Counter.add(4096, attrs)", best("counter.add(4096, attrs)", env, N // 10)),
    ]
    print(f"{'operation':36} {'ns/call':>9} {'x plain write':>14} {'x floor':>8}")
    for name, ns in rows:
        print(f"{name:36} {ns:9.1f} {ns / base_write:14.1f} {ns / floor:8.2f}")


if __name__ == "__main__":
    main()
