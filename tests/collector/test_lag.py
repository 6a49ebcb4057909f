"""The event-loop lag probe: a blocked loop shows as lag; the gauge covers the last minute."""

from __future__ import annotations

import asyncio
import time
import urllib.request

from lastactive.collector._lag import LAG_BUCKETS, PROBE_S, WINDOW_S, LoopLag
from tests.helpers import CollectorClient, wait_for


def test_a_blocked_loop_is_measured() -> None:
    lag = LoopLag()

    async def main() -> None:
        probe = asyncio.create_task(lag.run())
        await asyncio.sleep(3 * PROBE_S)
        time.sleep(0.2)  # the loop is blocked: the probe wakes late
        await asyncio.sleep(3 * PROBE_S)
        probe.cancel()

    asyncio.run(main())
    assert lag.longest(time.monotonic()) >= 0.2 - PROBE_S
    assert sum(lag.counts) >= 3 and lag.sum >= 0.2 - PROBE_S


def test_histogram_and_window() -> None:
    lag = LoopLag()
    lag.observe(0.0005, 100.0)
    lag.observe(0.3, 100.5)
    lag.observe(0.02, 130.0)
    assert lag.counts[0] == 1 and lag.counts[LAG_BUCKETS.index(0.5)] == 1
    assert lag.longest(131.0) == 0.3
    assert lag.longest(100.0 + WINDOW_S + 1) == 0.02  # the 0.3 s lag left the window


def _probes(c: CollectorClient) -> float:
    with urllib.request.urlopen(c.http + "/metrics", timeout=10) as r:
        body = r.read().decode()
    assert "lastactive_event_loop_lag_max_seconds" in body
    assert 'lastactive_gc_pause_max_seconds{generation="2"}' in body
    (count,) = [line for line in body.splitlines()
                if line.startswith("lastactive_event_loop_lag_seconds_count")]  # fmt: skip
    return float(count.split()[-1])


def test_metrics_expose_the_lag(collector: CollectorClient) -> None:
    wait_for(lambda: _probes(collector) > 0, what="a probe")
