"""The tracker's hot path with a fake clock, and the Reporter against the real servers (in
this process), restarted empty on the same port."""

from __future__ import annotations

import logging

import pytest

from lastactive.instrumentation import Reporter, SessionTracker, Source
from lastactive.instrumentation._reporter import export_interval_from_env
from tests.helpers import InProcessCollector, wait_for


class FakeClock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_first_activity_after_a_quiet_spell_wakes_the_exporter() -> None:
    clock, wakes = FakeClock(), []
    tracker = SessionTracker("s", clock=clock, quiet_after=5.0, on_wake=lambda: wakes.append(1))
    tracker.add_output(10)
    assert len(wakes) == 1  # first activity ever
    clock.t += 1
    tracker.add_input(3)
    tracker.record(Source.PROMPT)
    assert len(wakes) == 1  # busy: the periodic export will carry it
    clock.t += 2
    tracker.alive(Source.PROCESS)
    clock.t += 4
    tracker.alive(Source.PROCESS)  # liveness never wakes, and does not end the quiet spell
    assert len(wakes) == 1
    tracker.add_output(1)
    assert len(wakes) == 2  # 6 s of quiet, then activity: export at once
    assert (tracker.input_bytes, tracker.output_bytes) == (3, 11)
    assert tracker.times == {
        "output": clock.t,
        "input": clock.t - 6,
        "prompt": clock.t - 6,
        "process": clock.t,
    }


def test_export_interval_from_env(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("OTEL_METRIC_EXPORT_INTERVAL", raising=False)
    assert export_interval_from_env() == 5.0
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "1500")
    assert export_interval_from_env() == 1.5
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "soon")
    with caplog.at_level(logging.WARNING):
        assert export_interval_from_env() == 5.0
    assert "OTEL_METRIC_EXPORT_INTERVAL" in caplog.text
    with pytest.raises(ValueError, match="export_interval"):
        Reporter(export_interval=0)


def test_http_protocol_immediate_export_and_healing_after_a_restart(
    collector: InProcessCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
    # An hour between periodic exports: only the quiet-spell wake can deliver this quickly.
    reporter = Reporter(endpoint=collector.http, export_interval=3600, host_id="rep-host")
    try:
        tracker = reporter.session("rep", {"gen_ai.agent.name": "codey"})
        tracker.add_input(5)
        s = wait_for(lambda: collector.session("rep"), timeout=10, what="immediate export")
        assert s["agent_id"] == "codey" and s["host_id"] == "rep-host"
        assert s["input_bytes"] == 5 and s["last_active"] is not None
        status, agent_host = collector.get("/v1/hosts/rep-host")
        assert status == 200 and agent_host["input_bytes"] == 5

        # A collector that lost everything (new database, same address) heals at the next
        # export, because the timestamps are absolute.
        collector.stop()
        fresh = InProcessCollector(http_port=collector.http_port).start()
        try:
            assert fresh.session("rep") is None
            reporter.flush()
            got = fresh.session("rep")
            assert got is not None
            assert got["sources"]["input"] == s["sources"]["input"]
            assert got["last_active"] == s["last_active"]
        finally:
            fresh.stop()
    finally:
        reporter.shutdown()
        reporter.shutdown()  # idempotent
