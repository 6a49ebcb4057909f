"""Dashboards: reproducible, valid Grafana JSON; and /metrics (the real servers in this process)
keeps per-session series bounded while fleet totals stay exact. Prometheus and promtool run in
``tests/integration/test_dashboards_prometheus.py``."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.metrics.v1 import metrics_pb2

from tests.helpers import DASHBOARDS, InProcessCollector, boards, generated, kv, wait_for


def test_committed_json_is_what_the_code_generates() -> None:
    for name, text in generated().items():
        assert (DASHBOARDS / name).read_text() == text, (
            f"run python dashboards/generate.py ({name})"
        )


def test_dashboards_are_valid_grafana_json() -> None:
    uids = set()
    for name, board in boards().items():
        assert board["schemaVersion"] >= 36 and board["title"] and board["uid"] not in uids, name
        uids.add(board["uid"])
        names = [v["name"] for v in board["templating"]["list"]]
        assert {"datasource", "host", "agent"} <= set(names), name
        assert (
            next(v for v in board["templating"]["list"] if v["name"] == "datasource")["query"]
            == "prometheus"
        )
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert target["refId"]
        text = json.dumps(board)
        uids_used = {d["uid"] for d in _datasources(board)}
        assert uids_used == {"${datasource}"}, (name, uids_used)  # no hard-coded datasource
        assert ("$host" in text and "$agent" in text) or name != "runaway.json"


def _datasources(obj: Any) -> Iterator[dict[str, Any]]:
    if isinstance(obj, dict):
        ds = obj.get("datasource")
        if isinstance(ds, dict):
            yield ds
        for v in obj.values():
            yield from _datasources(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _datasources(v)


def io_request(n: int, t: int) -> bytes:
    points = [
        metrics_pb2.NumberDataPoint(
            time_unix_nano=t,
            start_time_unix_nano=t - 1,
            as_int=1000 * (i + 1),
            attributes=kv({"session.id": f"many-{i}", "network.io.direction": "transmit"}),
        )
        for i in range(n)
    ]
    metric = metrics_pb2.Metric(
        name="lastactive.session.io",
        sum=metrics_pb2.Sum(
            data_points=points,
            is_monotonic=True,
            aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
        ),
    )
    return ExportMetricsServiceRequest(
        resource_metrics=[
            metrics_pb2.ResourceMetrics(
                resource={"attributes": kv({"host.id": "fleet-host"})},
                scope_metrics=[metrics_pb2.ScopeMetrics(metrics=[metric])],
            )
        ]
    ).SerializeToString()


def test_per_session_series_stay_bounded_while_fleet_totals_stay_exact() -> None:
    c = InProcessCollector(metrics_top_sessions=5).start()
    try:
        status, _, _ = c.post(
            "/v1/metrics",
            io_request(3000, time.time_ns()),
            {"Content-Type": "application/x-protobuf"},
        )
        assert status == 200

        def scrape() -> list[str]:
            with urllib.request.urlopen(f"{c.http}/metrics", timeout=10) as r:
                return r.read().decode().splitlines()

        lines = wait_for(
            lambda: (ls := scrape()) and 'lastactive_sessions{state="active"} 3000.0' in ls and ls,
            timeout=30,
            what="3000 active sessions",
        )
        per_session = [
            ln for ln in lines if ln.startswith("lastactive_session_output_bytes_per_second{")
        ]
        assert len(per_session) == 5
        assert 'session_id="many-2999"' in per_session[0]  # the busiest first
        assert 'lastactive_host_sessions{host_id="fleet-host",state="active"} 3000.0' in lines
        assert "lastactive_sessions_idle_seconds_count 3000.0" in lines
    finally:
        c.stop()


def test_every_dashboard_round_trips_through_grafanas_own_sdk() -> None:
    """Issue 14: Grafana's SDK reads each board back, every panel's options into its panel
    type's options model (``"options": null`` could not be read), and writes the same JSON."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models import bargauge, stat, table, timeseries
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()
    options = {
        "timeseries": timeseries.Options,
        "stat": stat.Options,
        "table": table.Options,
        "bargauge": bargauge.Options,
    }
    for name, board in boards().items():
        model = Dashboard.from_json(board)
        assert model.panels, name
        for panel in model.panels:
            assert isinstance(panel.options, options[panel.type_val]), (name, panel.title)
        again = json.loads(json.dumps(model, cls=JSONEncoder))
        assert again == board, name
