"""The export half of the instrumentation: an OTel SDK pipeline that reads trackers."""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor, LogRecordExporter
from opentelemetry.sdk.environment_variables import (
    OTEL_EXPORTER_OTLP_HEADERS,
    OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
    OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
    OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
    OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
    OTEL_EXPORTER_OTLP_PROTOCOL,
    OTEL_EXPORTER_OTLP_TIMEOUT,
    OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
    OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
    OTEL_METRIC_EXPORT_INTERVAL,
    OTEL_SERVICE_NAME,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.util.re import parse_env_headers

from lastactive.client import otlp_endpoint
from lastactive.conventions import (
    ATTR_GEN_AI_AGENT_NAME,
    ATTR_GEN_AI_OPERATION_NAME,
    ATTR_HOLD,
    ATTR_HOLD_ID,
    ATTR_HOLD_REASON,
    ATTR_HOLD_UNTIL,
    ATTR_HOST_ID,
    ATTR_HOST_NAME,
    ATTR_NETWORK_IO_DIRECTION,
    ATTR_SERVICE_INSTANCE_ID,
    ATTR_SERVICE_NAME,
    ATTR_SOURCE,
    ATTR_TASK,
    DIRECTION_RECEIVE,
    DIRECTION_TRANSMIT,
    EVENT_ACTIVITY,
    EVENT_AGENT_SPAWN,
    EVENT_HOLD,
    HEADER_HOST_ID,
    METRIC_IO,
    METRIC_SOURCE_LAST_TIME,
    SCOPE_NAME,
    HoldKind,
    Source,
)
from lastactive.instrumentation._agent_task import AgentTask
from lastactive.instrumentation._host import host_identity
from lastactive.instrumentation._tracker import Clock, SessionTracker

_log = logging.getLogger(__name__)

DEFAULT_EXPORT_INTERVAL_S: Final = 5.0
"""Seconds between exports when ``OTEL_METRIC_EXPORT_INTERVAL`` is unset. The SDK's 60 s is too
coarse for idle decisions measured in minutes (ANCHORS: Coder pushes every 30 s, Gitpod 30 s)."""

DEFAULT_EXPORT_TIMEOUT_S: Final = 3.0
"""Seconds one export may take when ``OTEL_EXPORTER_OTLP_[METRICS_]TIMEOUT`` is unset, so a
wrapper never hangs long on exit when the collector is down (the SDK's default is 10 s)."""

HOLD_RENEWALS: Final = 3
"""A renewed hold stands for this many renewal intervals past each renewal, so one missed
renewal is fine and a holder that dies lets its hold lapse by itself."""

MIN_HOLD_TTL_S: Final = 10.0
"""...but for at least this many seconds: renewals travel in batched log exports (the SDK's
BatchLogRecordProcessor waits up to 1 s), so short intervals must not let a standing hold lapse."""


def hold_ttl(interval: float) -> float:
    """Seconds a hold renewed every ``interval`` seconds stands past each renewal."""
    return max(HOLD_RENEWALS * interval, MIN_HOLD_TTL_S)


PROTOCOL_GRPC: Final = "grpc"
PROTOCOL_HTTP: Final = "http/protobuf"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        _log.warning("ignoring %s=%r: not a number; using %s", name, raw, default)
        return default
    if value <= 0:
        _log.warning("ignoring %s=%r: must be > 0; using %s", name, raw, default)
        return default
    return value


def export_interval_from_env() -> float:
    """Export interval in seconds: ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds) or 5 s."""
    return _env_float(OTEL_METRIC_EXPORT_INTERVAL, DEFAULT_EXPORT_INTERVAL_S * 1000) / 1000


def _protocol(signal_var: str) -> str:
    proto = os.environ.get(signal_var) or os.environ.get(OTEL_EXPORTER_OTLP_PROTOCOL) or "grpc"
    if proto not in (PROTOCOL_GRPC, PROTOCOL_HTTP):
        _log.warning("unsupported OTLP protocol %r; using grpc", proto)
        return PROTOCOL_GRPC
    return proto


def _timeout_kwargs(signal_var: str) -> dict[str, float]:
    if os.environ.get(signal_var) or os.environ.get(OTEL_EXPORTER_OTLP_TIMEOUT):
        return {}  # the exporter reads the standard variables itself
    return {"timeout": DEFAULT_EXPORT_TIMEOUT_S}


_EXPORTERS: Final = {
    # signal: (exporter module, class, protocol variable, timeout variable, headers variable)
    "metrics": (
        "metric_exporter",
        "OTLPMetricExporter",
        OTEL_EXPORTER_OTLP_METRICS_PROTOCOL,
        OTEL_EXPORTER_OTLP_METRICS_TIMEOUT,
        OTEL_EXPORTER_OTLP_METRICS_HEADERS,
    ),
    "logs": (
        "_log_exporter",
        "OTLPLogExporter",
        OTEL_EXPORTER_OTLP_LOGS_PROTOCOL,
        OTEL_EXPORTER_OTLP_LOGS_TIMEOUT,
        OTEL_EXPORTER_OTLP_LOGS_HEADERS,
    ),
    "traces": (
        "trace_exporter",
        "OTLPSpanExporter",
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
        OTEL_EXPORTER_OTLP_TRACES_TIMEOUT,
        OTEL_EXPORTER_OTLP_TRACES_HEADERS,
    ),
}


def export_headers(signal_var: str, host_id: str) -> dict[str, str]:
    """The headers of a signal's exports: the SDK's (``signal_var``, e.g.
    ``OTEL_EXPORTER_OTLP_METRICS_HEADERS``, else ``OTEL_EXPORTER_OTLP_HEADERS``; W3C Baggage
    format, keys lower-cased as the SDK does) and ``lastactive-host-id: host_id``
    (:data:`~lastactive.conventions.HEADER_HOST_ID`, for a balancer in front of replicas)
    unless those set it. Passed explicitly, they replace the SDK's reading of the variables."""
    raw = os.environ.get(signal_var) or os.environ.get(OTEL_EXPORTER_OTLP_HEADERS) or ""
    return {HEADER_HOST_ID: host_id, **parse_env_headers(raw, liberal=True)}


def _otlp_exporter(signal: str, endpoint: str | None, host_id: str) -> Any:
    """The SDK's OTLP exporter for ``signal`` over the configured protocol (imported lazily:
    a wrapper only loads the transport it uses). ``endpoint`` is the collector's base URL, or
    ``None`` for :func:`lastactive.client.otlp_endpoint`'s rule; ``host_id`` goes in the
    routing header (:func:`export_headers`)."""
    module, cls, protocol_var, timeout_var, headers_var = _EXPORTERS[signal]
    kwargs: dict[str, Any] = _timeout_kwargs(timeout_var)
    kwargs["headers"] = export_headers(headers_var, host_id)
    transport = "http" if _protocol(protocol_var) == PROTOCOL_HTTP else "grpc"
    endpoint = otlp_endpoint(endpoint, signal, transport)
    if endpoint:
        kwargs["endpoint"] = (
            f"{endpoint.rstrip('/')}/v1/{signal}" if transport == "http" else endpoint
        )
    if transport == "http":
        kwargs["session"] = _pinned_session()
    exporter_module = importlib.import_module(
        f"opentelemetry.exporter.otlp.proto.{transport}.{module}"
    )
    return getattr(exporter_module, cls)(**kwargs)


def _pinned_session() -> Any:
    """A ``requests`` session for the SDK's OTLP/HTTP exporter that keeps the CA the exporter
    was configured with (``OTEL_EXPORTER_OTLP_CERTIFICATE``): plain ``requests`` lets
    ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` override a session's ``verify``, so a machine
    with those set (many images do) would reject a collector signed by the operator's CA.
    Proxy variables still apply."""
    import requests

    class _PinnedSession(requests.Session):
        def merge_environment_settings(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            settings: dict[str, Any] = super().merge_environment_settings(*args, **kwargs)
            if self.verify is not True:  # a CA was configured: it wins
                settings["verify"] = self.verify
            return settings

    return _PinnedSession()


class Reporter:
    """Exports the activity of its :class:`SessionTracker` s as OTLP, through the OTel SDK.

    One reporter per process (and host); one tracker per session. The hot path only touches the
    trackers; at each export the reporter's observable instruments read them:

    * ``lastactive.source.last_time`` (gauge, seconds since the epoch) per session and source;
    * ``lastactive.session.io`` (cumulative counter, bytes) per session and direction;

    and :meth:`event` emits discrete activity as OTLP log records with an ``event_name``.

    Configuration follows the SDK: ``OTEL_EXPORTER_OTLP_ENDPOINT``, ``..._PROTOCOL`` (``grpc``,
    the default, or ``http/protobuf``), ``..._HEADERS``, ``..._TIMEOUT``, ``OTEL_SERVICE_NAME``
    and ``OTEL_METRIC_EXPORT_INTERVAL`` (milliseconds; default here 5000, not the SDK's 60000).
    Explicit arguments win over the environment. Export errors are logged, never raised.

    Args:
        service_name: ``service.name``; default ``OTEL_SERVICE_NAME`` or ``lastactive``.
        host_id: ``host.id``; default the machine id (``/etc/machine-id``) or the host name.
        host_name: ``host.name``; default :func:`socket.gethostname`.
        endpoint: OTLP endpoint (``http://host:4317`` for gRPC, ``http://host:4318`` for HTTP).
        export_interval: seconds between exports.
        clock: seconds since the epoch, UTC; used by every tracker made here.
        metric_exporter, log_exporter, span_exporter: replace the OTLP exporters (tests, other
            backends).

    Raises:
        ValueError: ``export_interval`` is not positive.
    """

    def __init__(
        self,
        *,
        service_name: str | None = None,
        host_id: str | None = None,
        host_name: str | None = None,
        endpoint: str | None = None,
        export_interval: float | None = None,
        clock: Clock = time.time,
        metric_exporter: MetricExporter | None = None,
        log_exporter: LogRecordExporter | None = None,
        span_exporter: SpanExporter | None = None,
        resource_attributes: Mapping[str, str] | None = None,
    ) -> None:
        if export_interval is None:
            export_interval = export_interval_from_env()
        if export_interval <= 0:
            raise ValueError(f"export_interval must be > 0 seconds, got {export_interval!r}")
        self.export_interval = export_interval
        self.clock = clock
        """Seconds since the epoch (UTC), the clock every tracker made here uses."""
        self._sessions: dict[str | None, SessionTracker] = {}
        self._closed = False
        host_id, host_name = host_identity(host_id, host_name)
        attrs: dict[str, str] = {
            ATTR_SERVICE_NAME: service_name or os.environ.get(OTEL_SERVICE_NAME) or "lastactive",
            ATTR_SERVICE_INSTANCE_ID: str(uuid.uuid4()),
            ATTR_HOST_ID: host_id,
            ATTR_HOST_NAME: host_name,
            **(resource_attributes or {}),
        }
        self.resource = Resource.create(attrs)
        reader = PeriodicExportingMetricReader(
            metric_exporter or _otlp_exporter("metrics", endpoint, host_id),
            export_interval_millis=export_interval * 1000,
        )
        # No atexit shutdown: ours is bounded (see shutdown), the SDK's would block the exit.
        self._meter_provider = MeterProvider(
            metric_readers=[reader], resource=self.resource, shutdown_on_exit=False
        )
        meter = self._meter_provider.get_meter(SCOPE_NAME)
        meter.create_observable_gauge(
            METRIC_SOURCE_LAST_TIME,
            callbacks=[self._observe_times],
            unit="s",
            description="Time of the source's last activity, seconds since the Unix epoch",
        )
        meter.create_observable_counter(
            METRIC_IO,
            callbacks=[self._observe_io],
            unit="By",
            description="Bytes into (receive) and out of (transmit) the session",
        )
        self._logger_provider = LoggerProvider(resource=self.resource, shutdown_on_exit=False)
        self._logger_provider.add_log_record_processor(
            BatchLogRecordProcessor(log_exporter or _otlp_exporter("logs", endpoint, host_id))
        )
        self._logger = self._logger_provider.get_logger(SCOPE_NAME)
        self._tracer_provider = TracerProvider(resource=self.resource, shutdown_on_exit=False)
        self._tracer_provider.add_span_processor(
            BatchSpanProcessor(span_exporter or _otlp_exporter("traces", endpoint, host_id))
        )
        self._tracer = self._tracer_provider.get_tracer(SCOPE_NAME)
        self._wake = threading.Event()
        self._flushing = threading.Lock()
        """Held by a flush (:meth:`flush` or the wake-up one): one at a time, so :meth:`flush`
        returns only once a wake-up export already begun is answered too."""
        self._worker = threading.Thread(
            target=self._flush_on_wake, name="lastactive-wake", daemon=True
        )
        self._worker.start()

    def session(
        self, session_id: str | None, attributes: Mapping[str, str | int] | None = None
    ) -> SessionTracker:
        """The tracker of ``session_id``, made on first use; ``None`` is the host's own tracker
        (host-level sources such as ``boot`` and ``user``). ``attributes`` (semconv names such
        as ``gen_ai.agent.name``) go on every data point of that session."""
        tracker = self._sessions.get(session_id)
        if tracker is None:
            tracker = SessionTracker(
                session_id,
                attributes,
                clock=self.clock,
                quiet_after=self.export_interval,
                on_wake=self._wake.set,
            )
            self._sessions[session_id] = tracker
        return tracker

    def event(
        self,
        tracker: SessionTracker,
        name: str,
        attributes: Mapping[str, str | int | float | Sequence[str]] | None = None,
        *,
        source: Source | None = None,
    ) -> None:
        """Emit one event (an OTLP log record with ``event_name``) for ``tracker``'s session.

        With ``source``, the event is that activity (``lastactive.source``) and the tracker
        records it too, so the timestamp gauges agree with the event.
        """
        if source is not None:
            tracker.record(source)
        attrs: dict[str, str | int | float | Sequence[str]] = dict(tracker.labels())
        if source is not None:
            attrs[ATTR_SOURCE] = str(source)
        if attributes:
            attrs.update(attributes)
        # An event: named by event_name, details in attributes, no body (semantic conventions,
        # "Events": events SHOULD NOT use body and SHOULD have a severity).
        self._logger.emit(
            timestamp=int(self.clock() * 1e9),
            event_name=name,
            attributes=attrs,
            severity_number=SeverityNumber.INFO,
        )

    def activity(self, tracker: SessionTracker, source: Source) -> None:
        """Emit ``source`` as a discrete ``lastactive.activity`` event and record it."""
        self.event(tracker, EVENT_ACTIVITY, source=source)

    def hold(
        self,
        tracker: SessionTracker,
        kind: HoldKind,
        hold_id: str,
        until: float,
        reason: str | None = None,
    ) -> None:
        """Report that ``kind``/``hold_id`` holds ``tracker``'s session up until ``until``
        (seconds since the epoch; 0 = until released; ``<= now`` releases it), doing
        ``reason`` (in words). Send it again to renew; see ``docs/conventions.md``, "Holds"."""
        attrs: dict[str, str | float] = {
            ATTR_HOLD: str(kind),
            ATTR_HOLD_ID: hold_id,
            ATTR_HOLD_UNTIL: until,
        }
        if reason is not None:
            attrs[ATTR_HOLD_REASON] = reason
        self.event(tracker, EVENT_HOLD, attrs)

    @contextlib.contextmanager
    def lease(self, tracker: SessionTracker, ttl: float) -> Iterator[str]:
        """Hold a busy lease on ``tracker``'s session while the block runs.

        The lease stands for ``ttl`` seconds from each renewal; a thread renews it (and records
        ``lease`` work) every ``min(ttl / 3, export interval)``, so it expires by itself within
        ``ttl`` if this process dies, and is released when the block ends. Yields the lease id.

        Raises:
            ValueError: ``ttl`` is not positive.
        """
        if ttl <= 0:
            raise ValueError(f"ttl must be > 0 seconds, got {ttl!r}")
        lease_id = uuid.uuid4().hex
        stop = threading.Event()

        def renew() -> None:
            while True:
                tracker.record(Source.LEASE)
                self.hold(tracker, HoldKind.LEASE, lease_id, self.clock() + ttl)
                if stop.wait(min(ttl / 3, self.export_interval)):
                    return

        renewer = threading.Thread(target=renew, name="lastactive-lease", daemon=True)
        renewer.start()
        try:
            yield lease_id
        finally:
            stop.set()
            renewer.join()
            self.hold(tracker, HoldKind.LEASE, lease_id, self.clock())
            self.flush(timeout=2.0)

    def agent_task(
        self, tracker: SessionTracker, task: str, agent_name: str | None = None
    ) -> AgentTask:
        """Start an agent task on ``tracker``'s session (seed 004's ``spawn``): a span from now
        until :meth:`AgentTask.complete` or :meth:`AgentTask.error`, progress as span events,
        and each step also sent at once as a lifecycle event. Best used with ``with``."""
        agent = agent_name or str(tracker.attributes.get(ATTR_GEN_AI_AGENT_NAME, "agent"))
        span = self._tracer.start_span(
            f"invoke_agent {agent}",
            attributes={
                **tracker.labels(),
                ATTR_GEN_AI_OPERATION_NAME: "invoke_agent",
                ATTR_GEN_AI_AGENT_NAME: agent,
                ATTR_TASK: task,
            },
        )
        self.event(
            tracker,
            EVENT_AGENT_SPAWN,
            {ATTR_TASK: task, ATTR_GEN_AI_AGENT_NAME: agent},
            source=Source.START,
        )
        return AgentTask(self, tracker, span)

    def start_span(self, name: str, attributes: Mapping[str, str | int | float]) -> Any:
        """Start a span (ended by the caller) on this reporter's tracer and resource."""
        return self._tracer.start_span(name, attributes=dict(attributes))

    def flush(self, timeout: float = 5.0) -> None:
        """Export everything now (blocking up to about ``timeout`` seconds per signal), after
        an export woken by activity after a quiet spell if one is under way (it is not repeated
        after this one): once this returns, no export of what was recorded before it is still
        on its way."""
        millis = int(timeout * 1000)
        with self._flushing:
            self._wake.clear()  # this flush exports what the wake-up was for
            self._tracer_provider.force_flush(millis)
            self._logger_provider.force_flush(millis)
            self._meter_provider.force_flush(millis)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Export what is left and stop, within about ``timeout`` seconds. Idempotent.

        The last export gets at most ``timeout`` seconds in all: with the collector down the
        SDK would retry until each exporter's own timeout, holding up the host's exit.
        """
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        millis = int(timeout * 1000)

        def stop_providers() -> None:
            self._tracer_provider.shutdown()
            self._logger_provider.shutdown()
            self._meter_provider.shutdown(timeout_millis=millis)

        stopper = threading.Thread(target=stop_providers, name="lastactive-stop", daemon=True)
        stopper.start()
        stopper.join(timeout)
        if stopper.is_alive():
            _log.warning("lastactive: collector unreachable; the last export was dropped")

    def _flush_on_wake(self) -> None:
        while True:
            self._wake.wait()
            if self._closed:
                return
            with self._flushing:
                if not self._wake.is_set():  # a flush() since has exported it
                    continue
                self._wake.clear()
                try:
                    millis = int(self.export_interval * 1000)
                    self._logger_provider.force_flush(millis)  # events first: they carry details
                    self._meter_provider.force_flush(millis)
                except Exception:  # export never raises into the host application
                    _log.exception("lastactive: export after a quiet spell failed")

    def _observe_times(self, options: CallbackOptions) -> Iterable[Observation]:
        for tracker in list(self._sessions.values()):
            base = tracker.labels()
            for source, when in list(tracker.times.items()):
                yield Observation(when, {**base, ATTR_SOURCE: str(source)})

    def _observe_io(self, options: CallbackOptions) -> Iterable[Observation]:
        for tracker in list(self._sessions.values()):
            if tracker.session_id is None:
                continue  # bytes are a session's
            base = tracker.labels()
            if tracker.io_source is not None:
                base[ATTR_SOURCE] = str(tracker.io_source)
            yield Observation(
                tracker.input_bytes, {**base, ATTR_NETWORK_IO_DIRECTION: DIRECTION_RECEIVE}
            )
            yield Observation(
                tracker.output_bytes, {**base, ATTR_NETWORK_IO_DIRECTION: DIRECTION_TRANSMIT}
            )
