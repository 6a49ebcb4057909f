"""Reporters bound to what they report about (``_ingest._bind``): a host's credential cannot
forge another host's activity, and hibernation needs the act scope."""

from __future__ import annotations

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.logs.v1 import logs_pb2

from lastactive.collector._auth import Principal, Scope
from lastactive.collector._ingest import ForbiddenItemError, Ingest
from lastactive.collector._state import ActivityState, Kind
from tests.helpers import S, kv, metrics_request, sum_point

T0 = 1_800_000_000 * S
REPORT = frozenset({Scope.REPORT})
HOST_A = Principal("host-a", REPORT, host="host-a")


def make() -> Ingest:
    return Ingest(ActivityState(started_at=T0 - 60 * S), lambda: T0)


def input_at(sid: str, host: str | None, seconds_ago: float, source: str = "input") -> object:
    req = metrics_request(sid, host_id=host or "", gauges={"lastactive.source.last_time": [
        sum_point(0, T0, 0, **{"lastactive.source": source})]})  # fmt: skip
    req.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].as_double = (
        T0 / S - seconds_ago
    )
    if host is None:
        attrs = req.resource_metrics[0].resource.attributes
        del attrs[[a.key for a in attrs].index("host.id")]
    return req


def events(resource: dict[str, object], *records: tuple[str, dict[str, object]]) -> object:
    return ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource={"attributes": kv(resource)},
        scope_logs=[logs_pb2.ScopeLogs(log_records=[
            logs_pb2.LogRecord(event_name=n, attributes=kv(a), time_unix_nano=T0 - S)
            for n, a in records])])])  # fmt: skip


def test_a_bound_reporter_reports_about_its_own_host() -> None:
    ingest = make()
    out = ingest.metrics(input_at("s-a", "host-a", 5), HOST_A)  # type: ignore[arg-type]
    assert (out.accepted, out.rejected) == (1, 0)
    # Naming no host is naming its own.
    out = ingest.metrics(input_at("s-a2", None, 5), HOST_A)  # type: ignore[arg-type]
    assert (out.accepted, out.rejected) == (1, 0)
    v = ingest.state.get(Kind.SESSION, "s-a2", T0)
    assert v is not None and v.host_id == "host-a"


def test_another_hosts_telemetry_is_rejected_and_state_untouched() -> None:
    ingest = make()
    ingest.metrics(input_at("victim-s", "victim-host", 3600))  # type: ignore[arg-type]
    before = ingest.state.get(Kind.SESSION, "victim-s", T0)
    host_before = ingest.state.get(Kind.HOST, "victim-host", T0)
    # Naming the victim host, or the victim's session from its own host, or with no host.
    for req in (input_at("victim-s", "victim-host", 1), input_at("forged", "victim-host", 1),
                input_at("victim-s", "host-a", 1), input_at("victim-s", None, 1)):  # fmt: skip
        out = ingest.metrics(req, HOST_A)  # type: ignore[arg-type]
        assert (out.accepted, out.rejected, out.forbidden) == (0, 1, 1), out
        assert "host-a" in out.error_message
    assert ingest.state.get(Kind.SESSION, "victim-s", T0) == before
    assert ingest.state.get(Kind.HOST, "victim-host", T0) == host_before
    assert ingest.state.get(Kind.SESSION, "forged", T0) is None


def test_exit_and_hibernate_cannot_be_forged_for_another_host() -> None:
    ingest = make()
    ingest.metrics(input_at("victim-s", "victim-host", 10))  # type: ignore[arg-type]
    req = events({"session.id": "victim-s", "host.id": "victim-host"},
                 ("lastactive.process.exit", {"process.exit.code": 0}),
                 ("lastactive.activity", {"lastactive.source": "hibernate"}))  # fmt: skip
    out = ingest.logs(req, HOST_A)  # type: ignore[arg-type]
    assert (out.accepted, out.forbidden) == (0, 2)
    v = ingest.state.get(Kind.SESSION, "victim-s", T0)
    assert v is not None and v.exit_code is None and "hibernate" not in v.sources


def test_hibernation_needs_the_act_scope_and_act_alone_records_only_that() -> None:
    ingest = make()
    ingest.metrics(input_at("s", "h", 10))  # type: ignore[arg-type]
    hibernate = ("lastactive.activity", {"lastactive.source": "hibernate"})
    out = ingest.logs(events({"session.id": "s"}, hibernate),  # type: ignore[arg-type]
                      Principal("reporter", REPORT))  # fmt: skip
    assert out.forbidden == 1 and "act" in out.error_message
    culler = Principal("culler", frozenset({Scope.ACT, Scope.READ}))
    out = ingest.logs(events({"session.id": "s"}, hibernate,  # type: ignore[arg-type]
                             ("lastactive.activity", {"lastactive.source": "input"})),
                      culler)  # fmt: skip
    assert (out.accepted, out.forbidden) == (1, 1) and "hibernate only" in out.error_message
    v = ingest.state.get(Kind.SESSION, "s", T0)
    assert v is not None and "hibernate" in v.sources and v.last_active == T0 - 10 * S
    # Neither can it be sent as a gauge by a reporter.
    out = ingest.metrics(input_at("s", "h", 1, "hibernate"), Principal("r", REPORT))  # type: ignore[arg-type]
    assert out.forbidden == 1


def test_session_prefixes_and_agents() -> None:
    ingest = make()
    p = Principal("ci", REPORT, host="ci-1", session_prefixes=("ci-",), agents=("codex",))
    assert ingest.metrics(input_at("ci-42", "ci-1", 1), p).accepted == 1  # type: ignore[arg-type]
    out = ingest.metrics(input_at("prod-1", "ci-1", 1), p)  # type: ignore[arg-type]
    assert out.forbidden == 1 and "ci-*" in out.error_message
    with pytest.raises(ForbiddenItemError, match="agent"):
        ingest.agent_webhook("ci-43", "claude-code", "lastactive.agent.spawn", None, None,
                             principal=p)  # fmt: skip
    assert ingest.agent_webhook("ci-44", "codex", "lastactive.agent.spawn", None, None,
                                principal=p) == "ci-1"  # fmt: skip
