"""``lastactive cull`` against the real servers in this process: acts once per deadline, records
the hibernation back, and a dry run only logs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lastactive._cull import Culler
from tests.helpers import InProcessCollector, S, metrics_request, sum_point, wait_for

PROTO = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def idle_collector(tmp_path: Path) -> Iterator[InProcessCollector]:
    policy = tmp_path / "policy.toml"
    policy.write_text("[defaults]\nidle_after = 1\nhibernate_after = 2\n")
    c = InProcessCollector(policy=policy).start()
    t = time.time_ns() - 10 * S
    req = metrics_request("old", host_id="h-old", gauges={"lastactive.source.last_time": [
        sum_point(0, time.time_ns(), 0, **{"lastactive.source": "input"})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = t / S
    assert c.post("/v1/metrics", req.SerializeToString(), PROTO)[0] == 200
    yield c
    c.stop()


def test_dry_run_acts_on_nothing(idle_collector: InProcessCollector) -> None:
    acted: list[dict[str, Any]] = []
    culler = Culler(idle_collector.http, acted.append, dry_run=True)
    outcomes = {d["id"]: how for d, how in culler.once()}
    assert outcomes == {"old": "dry-run", "h-old": "dry-run"} and acted == []


def test_acts_once_per_deadline_and_records_the_hibernation(
    idle_collector: InProcessCollector,
) -> None:
    acted: list[dict[str, Any]] = []
    culler = Culler(idle_collector.http, acted.append)
    assert sorted(how for _, how in culler.once()) == ["hibernated", "hibernated"]
    assert sorted(d["id"] for d in acted) == ["h-old", "old"]
    assert culler.once() == []  # recorded back: no longer due, and never twice anyway
    s = wait_for(lambda: idle_collector.session("old"), what="the session")
    assert "hibernate" in s["sources"]
    status, decisions = idle_collector.get("/v1/decisions?within=0")
    assert status == 200 and decisions["hibernate"] == []


def test_a_failed_action_is_retried_next_round(idle_collector: InProcessCollector) -> None:
    calls: list[str] = []

    def flaky(d: dict[str, Any]) -> None:
        calls.append(d["id"])
        if len(calls) <= 2:
            raise OSError("hypervisor busy")

    culler = Culler(idle_collector.http, flaky, concurrency=1)
    assert all(how.startswith("failed") for _, how in culler.once())
    assert sorted(how for _, how in culler.once()) == ["hibernated", "hibernated"]


def test_concurrency_must_be_positive() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        Culler("http://127.0.0.1:1", None, concurrency=0)
