"""Generate lastactive's Grafana dashboards (grafana-foundation-sdk) into this folder.

    python dashboards/generate.py          # rewrites dashboards/*.json

The committed JSON must match what this writes (tests/dashboards/test_dashboards.py checks).
Every query reads the collector's own ``/metrics``; the datasource is a variable, never a
hard-coded uid. Variables: ``datasource``, ``host``, ``agent`` and ``api`` (the collector's HTTP
URL, for links from a session row to its state).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as c
from grafana_foundation_sdk.models.dashboard import DataSourceRef

HERE = Path(__file__).resolve().parent
DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
SEL = 'host_id=~"$host", agent=~"$agent"'
"""The variables' filter on per-session series."""
HOST = 'host_id=~"$host"'


def _query(expr: str, ref: str, legend: str = "", instant: bool = False) -> Any:
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format("table")
    return q


# Every panel with its options said (never "options": null, which Grafana's own SDK cannot
# read back: tests/dashboards round-trips each board through it).


def _timeseries(title: str) -> Any:
    return (
        timeseries.Panel()
        .title(title)
        .legend(
            common.VizLegendOptions()
            .display_mode(c.LegendDisplayMode.LIST)
            .placement(c.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common.VizTooltipOptions().mode(c.TooltipDisplayMode.MULTI).sort(c.SortOrder.DESCENDING)
        )
        .line_width(1)
        .fill_opacity(10)
        .show_points(c.VisibilityMode.NEVER)
    )


def _stat(title: str) -> Any:
    return (
        stat.Panel()
        .title(title)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(c.BigValueGraphMode.AREA)
        .color_mode(c.BigValueColorMode.VALUE)
        .text_mode(c.BigValueTextMode.AUTO)
        .justify_mode(c.BigValueJustifyMode.AUTO)
        .orientation(c.VizOrientation.AUTO)
    )


def _table(title: str) -> Any:
    return table.Panel().title(title).show_header(True).cell_height(c.TableCellHeight.SM)


def _bargauge(title: str) -> Any:
    return (
        bargauge.Panel()
        .title(title)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .orientation(c.VizOrientation.HORIZONTAL)
        .display_mode(c.BarGaugeDisplayMode.GRADIENT)
        .show_unfilled(True)
    )


def _session_link() -> Any:
    return (
        dashboard.DashboardLink("Session state in the lastactive API")
        .url("${api}/v1/sessions/${__data.fields.session_id}")
        .target_blank(True)
    )


class _Board:
    """A dashboard being built: unique panel ids, a 24-wide grid."""

    def __init__(self, uid: str, title: str, description: str) -> None:
        self._ids: Iterator[int] = itertools.count(1)
        self.builder = (
            dashboard.Dashboard(title)
            .uid(uid)
            .description(description)
            .tags(["lastactive"])
            .refresh("30s")
            .time("now-1h", "now")
            .timezone("utc")
            .with_variable(
                dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus")
            )
            .with_variable(
                dashboard.QueryVariable("host")
                .label("Host")
                .datasource(DS)
                .query("label_values(lastactive_host_sessions, host_id)")
                .multi(True)
                .include_all(True)
                .all_value(".*")
            )
            .with_variable(
                dashboard.QueryVariable("agent")
                .label("Agent")
                .datasource(DS)
                .query("label_values(lastactive_session_idle_seconds, agent)")
                .multi(True)
                .include_all(True)
                .all_value(".*")
            )
            .with_variable(
                dashboard.TextBoxVariable("api")
                .label("lastactive API")
                .default_value("http://127.0.0.1:4318")
            )
        )

    def add(self, panel: Any, width: int = 12, height: int = 8) -> None:
        self.builder = self.builder.with_panel(
            panel.id(next(self._ids)).datasource(DS).span(width).height(height)
        )

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(json.dumps(self.builder.build(), cls=JSONEncoder))
        return data


def runaway() -> dict[str, Any]:
    b = _Board(
        "lastactive-runaway",
        "lastactive: runaway sessions",
        "Sessions spinning out of control (seed 003) and stuck agents (seed 004).",
    )
    b.add(
        _timeseries("Output bytes/s, busiest sessions")
        .unit("Bps")
        .with_target(
            _query(
                f"topk(10, lastactive_session_output_bytes_per_second{{{SEL}}})",
                "A",
                "{{session_id}}",
            )
        ),
    )
    b.add(
        _stat("Runaway sessions now").with_target(
            _query('sum(lastactive_sessions{state="runaway"})', "A")
        ),
        width=6,
    )
    b.add(
        _stat("Stuck agents now").with_target(
            _query('sum(lastactive_sessions{state="stuck"})', "A")
        ),
        width=6,
    )
    b.add(
        _table("Time spent runaway in the last hour (seconds)")
        .data_links([_session_link()])
        .with_target(
            _query(
                f"increase(lastactive_session_runaway_seconds_total{{{SEL}}}[1h]) > 0",
                "A",
                instant=True,
            )
        ),
    )
    b.add(
        _table("Stuck agents: task and seconds without progress")
        .data_links([_session_link()])
        .with_target(_query(f"lastactive_session_stuck_seconds{{{SEL}}}", "A", instant=True)),
    )
    b.add(
        _table("Sessions by output bytes/s (link: state in the API)")
        .data_links([_session_link()])
        .with_target(
            _query(
                f"topk(20, lastactive_session_output_bytes_per_second{{{SEL}}})", "A", instant=True
            )
        ),
        width=24,
    )
    return b.json()


def fleet() -> dict[str, Any]:
    b = _Board(
        "lastactive-fleet",
        "lastactive: fleet activity",
        "Who is using what: active vs idle, hibernation, presence vs engagement.",
    )
    b.add(
        _timeseries("Sessions active, idle, hibernated").with_target(
            _query(f"sum by (state) (lastactive_host_sessions{{{HOST}}})", "A", "{{state}}")
        ),
    )
    b.add(
        _timeseries("Hibernation: due now and hibernated").with_target(
            _query(
                'sum by (state) (lastactive_sessions{state=~"hibernate_due|hibernated"})',
                "A",
                "{{state}}",
            )
        ),
    )
    b.add(
        _bargauge("How long sessions have been idle (last_active distribution)").with_target(
            _query(
                "sum by (le) (lastactive_sessions_idle_seconds_bucket)",
                "A",
                "≤ {{le}} s",
                instant=True,
            )
        ),
    )
    b.add(
        _bargauge("Sessions per host").with_target(
            _query(
                f"sum by (host_id) (lastactive_host_sessions{{{HOST}}})",
                "A",
                "{{host_id}}",
                instant=True,
            )
        ),
    )
    b.add(
        _timeseries("Presence vs engagement vs work (sessions, last 5 min)").with_target(
            _query("sum by (class) (lastactive_sessions_recent)", "A", "{{class}}")
        ),
    )
    b.add(
        _timeseries("Activity updates per second, by source").with_target(
            _query(
                "sum by (source) (rate(lastactive_activity_updates_total[$__rate_interval]))",
                "A",
                "{{source}}",
            )
        ),
    )
    return b.json()


def collector_health() -> dict[str, Any]:
    b = _Board(
        "lastactive-collector",
        "lastactive: collector health",
        "Ingest, rejections, latency, write-behind and watchers of lastactive itself.",
    )
    rate = "[$__rate_interval]"
    b.add(
        _timeseries("Ingest: data points/s by signal and transport").with_target(
            _query(
                f"sum by (signal, transport) "
                f"(rate(lastactive_otlp_data_points_accepted_total{rate}))",
                "A",
                "{{signal}} {{transport}}",
            )
        ),
    )
    b.add(
        _timeseries("Rejected data points/s and failed requests/s")
        .with_target(
            _query(
                f"sum by (signal, transport) "
                f"(rate(lastactive_otlp_data_points_rejected_total{rate}))",
                "A",
                "rejected {{signal}} {{transport}}",
            )
        )
        .with_target(
            _query(
                f"sum by (signal, transport, status) "
                f"(rate(lastactive_otlp_requests_failed_total{rate}))",
                "B",
                "failed {{signal}} {{transport}} {{status}}",
            )
        ),
    )
    b.add(
        _timeseries("Ingest latency p50 / p99")
        .unit("s")
        .with_target(
            _query(
                f"histogram_quantile(0.5, sum by (le) "
                f"(rate(lastactive_otlp_ingest_duration_seconds_bucket{rate})))",
                "A",
                "p50",
            )
        )
        .with_target(
            _query(
                f"histogram_quantile(0.99, sum by (le) "
                f"(rate(lastactive_otlp_ingest_duration_seconds_bucket{rate})))",
                "B",
                "p99",
            )
        ),
    )
    b.add(
        _timeseries("Write-behind: last flush duration and rows")
        .with_target(_query("lastactive_flush_duration_seconds", "A", "seconds {{instance}}"))
        .with_target(_query("lastactive_flush_rows", "B", "rows {{instance}}")),
    )
    b.add(
        _timeseries("Watchers: subscribers, queued transitions, resyncs/s")
        .with_target(_query("lastactive_watch_subscribers", "A", "subscribers {{instance}}"))
        .with_target(_query("lastactive_watch_queued_transitions", "B", "queued {{instance}}"))
        .with_target(
            _query(f"rate(lastactive_watch_resyncs_total{rate})", "C", "resyncs/s {{instance}}")
        ),
    )
    b.add(
        _timeseries("Transitions/s by kind").with_target(
            _query(
                f"sum by (field, to) (rate(lastactive_transitions_total{rate}))",
                "A",
                "{{field}} → {{to}}",
            )
        ),
    )
    b.add(  # replicas on PostgreSQL only (README, "Replicas"); empty for one process
        _timeseries("Replicas: shards evaluated and entities in memory, each")
        .with_target(_query("lastactive_replica_shards", "A", "shards {{replica}}"))
        .with_target(_query("lastactive_replica_entities", "B", "in memory {{replica}}"))
        .with_target(_query("max(lastactive_replicas_live)", "C", "live replicas")),
    )
    return b.json()


DASHBOARDS = {
    "runaway.json": runaway,
    "fleet.json": fleet,
    "collector.json": collector_health,
}


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {
        name: json.dumps(make(), indent=2, sort_keys=True) + "\n"
        for name, make in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / name).write_text(text)
        print(f"wrote dashboards/{name}")
