"""How a command finds and talks to the collector, the same way for every subcommand.

Standard library only: the hooks import it on every event and must start fast.

Where the collector is (the first that is set wins):

* the HTTP API (``hook``, ``tmux``, ``cull``, ``ls``): the ``--url`` flag, ``LASTACTIVE_URL``,
  else ``http://LASTACTIVE_HOST:LASTACTIVE_HTTP_PORT`` (default ``http://127.0.0.1:4318``);
* OTLP through the OpenTelemetry SDK (``run``, ``lease``, ``host``, ``proxy``): the
  ``--endpoint`` flag, ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or the signal's own
  ``OTEL_EXPORTER_OTLP_<SIGNAL>_ENDPOINT``, which the SDK reads itself), else
  ``LASTACTIVE_HOST`` with ``LASTACTIVE_GRPC_PORT`` (or ``LASTACTIVE_HTTP_PORT`` for
  ``http/protobuf``) when either is set, else the SDK's default (``localhost:4317``).

``LASTACTIVE_HOST`` and the ports are the variables ``lastactive serve`` binds with, so one
environment configures both ends. A wildcard bind address (``0.0.0.0``, ``::``) is reached on
loopback.

Credentials and TLS (a collector with ``--auth-file`` / ``--tls-cert``), the OpenTelemetry
exporter variables, read by the SDK exporters themselves and by this module the same way
(OTel specification, "OTLP Exporter Configuration"):

* ``OTEL_EXPORTER_OTLP_HEADERS`` (``OTEL_EXPORTER_OTLP_LOGS_HEADERS`` first for log records),
  e.g. ``Authorization=Bearer%20la_...``: sent with OTLP (``hook``, ``tmux-event``);
* ``LASTACTIVE_TOKEN``: the bearer token of the query API and hibernation records (``ls``,
  ``cull``), where OTel has no variable; each kind falls back to the other's credential, so
  one token with several scopes configures everything;
* ``OTEL_EXPORTER_OTLP_CERTIFICATE`` (the CA to trust), ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE``
  and ``OTEL_EXPORTER_OTLP_CLIENT_KEY`` (mTLS), for an ``https://`` URL or endpoint.

The short-lived reporters send OTLP/JSON log records with :func:`post_logs` (opentelemetry-proto
``docs/specification.md``, "JSON Protobuf Encoding"): importing the OTel SDK alone would take
most of a hook's time budget.
"""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from lastactive._spool import Spool
from lastactive.conventions import (
    ATTR_HOST_ID,
    ENV_GRPC_PORT,
    ENV_HOOK_TIMEOUT,
    ENV_HOST,
    ENV_HTTP_PORT,
    ENV_TOKEN,
    ENV_URL,
    HEADER_HOST_ID,
    SCOPE_NAME,
)

__all__ = [
    "DEFAULT_GRPC_PORT",
    "DEFAULT_HOST",
    "DEFAULT_HTTP_PORT",
    "HOOK_TIMEOUT_S",
    "Attributes",
    "Credential",
    "get_json",
    "headers_for",
    "hook_timeout",
    "http_url",
    "logs_request",
    "otlp_endpoint",
    "post_json",
    "post_logs",
    "tls_context",
]

DEFAULT_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 4318
"""OTLP/HTTP's default port (OTLP specification)."""
DEFAULT_GRPC_PORT: Final = 4317
"""OTLP/gRPC's default port (OTLP specification)."""

HOOK_TIMEOUT_S: Final = 0.25
"""Seconds a one-shot reporter (``hook``, ``tmux-event``) waits for the collector."""

_WILDCARDS: Final = {"0.0.0.0": "127.0.0.1", "::": "::1", "": DEFAULT_HOST}

Attributes = Mapping[str, str | int | float | bool]


def _base(port_var: str, default_port: int, env: Mapping[str, str]) -> str:
    host = env.get(ENV_HOST, DEFAULT_HOST).strip()
    host = _WILDCARDS.get(host, host)
    port = env.get(port_var, "").strip() or str(default_port)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def http_url(flag: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The collector's HTTP base URL (no trailing slash): ``flag``, ``LASTACTIVE_URL``, else
    built from ``LASTACTIVE_HOST`` and ``LASTACTIVE_HTTP_PORT`` (see the module docstring)."""
    env = os.environ if env is None else env
    url = flag or env.get(ENV_URL) or _base(ENV_HTTP_PORT, DEFAULT_HTTP_PORT, env)
    return url.rstrip("/")


def otlp_endpoint(
    flag: str | None, signal: str, transport: str, env: Mapping[str, str] | None = None
) -> str | None:
    """The OTLP base endpoint for an SDK exporter of ``signal`` (``metrics``, ``logs``,
    ``traces``) over ``transport`` (``grpc`` or ``http``), or ``None`` to let the SDK read
    ``OTEL_EXPORTER_OTLP_*`` or use its default (see the module docstring)."""
    env = os.environ if env is None else env
    if flag:
        return flag
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    ):
        return None
    port_var, default = (
        (ENV_HTTP_PORT, DEFAULT_HTTP_PORT)
        if transport == "http"
        else (ENV_GRPC_PORT, DEFAULT_GRPC_PORT)
    )
    if env.get(ENV_HOST) or env.get(port_var):
        return _base(port_var, default, env)
    return None


Credential = Literal["otlp", "api"]
"""Which credential a request carries: an exporter's (``otlp``) or the query API's (``api``)."""


def _env_headers(value: str) -> dict[str, str]:
    """``key1=value1,key2=value2``, values percent-decoded (W3C Baggage's format, as the OTel
    specification gives ``OTEL_EXPORTER_OTLP_HEADERS``); malformed members are skipped."""
    out: dict[str, str] = {}
    for member in value.split(","):
        key, eq, val = member.partition("=")
        if eq and key.strip():
            out[key.strip()] = urllib.parse.unquote(val.strip())
    return out


def headers_for(credential: Credential, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The headers a request carrying ``credential`` sends (see the module docstring)."""
    env = os.environ if env is None else env
    otlp = env.get("OTEL_EXPORTER_OTLP_LOGS_HEADERS") or env.get("OTEL_EXPORTER_OTLP_HEADERS")
    token = env.get(ENV_TOKEN, "").strip()
    api = {"Authorization": f"Bearer {token}"} if token else None
    if credential == "otlp":
        return _env_headers(otlp) if otlp else api or {}
    return api or (_env_headers(otlp) if otlp else {})


def tls_context(url: str, env: Mapping[str, str] | None = None) -> ssl.SSLContext | None:
    """For an ``https://`` ``url``: a context trusting ``OTEL_EXPORTER_OTLP_CERTIFICATE`` (else
    the system's CAs) and presenting ``OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE`` / ``_KEY``.

    Raises:
        OSError: a configured file cannot be read (``ssl.SSLError`` is an ``OSError``).
    """
    if not url.startswith("https:"):
        return None
    env = os.environ if env is None else env
    ctx = ssl.create_default_context(cafile=env.get("OTEL_EXPORTER_OTLP_CERTIFICATE") or None)
    cert = env.get("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    if cert:
        ctx.load_cert_chain(cert, env.get("OTEL_EXPORTER_OTLP_CLIENT_KEY") or None)
    return ctx


def _open(req: urllib.request.Request | str, timeout: float) -> Any:
    url = req if isinstance(req, str) else req.full_url
    return urllib.request.urlopen(req, timeout=timeout, context=tls_context(url))


def hook_timeout(env: Mapping[str, str] | None = None) -> float:
    """``LASTACTIVE_HOOK_TIMEOUT`` seconds, or :data:`HOOK_TIMEOUT_S` when unset or not a
    positive number."""
    env = os.environ if env is None else env
    try:
        value = float(env.get(ENV_HOOK_TIMEOUT, HOOK_TIMEOUT_S))
    except ValueError:
        return HOOK_TIMEOUT_S
    return value if value > 0 else HOOK_TIMEOUT_S


def get_json(
    url: str, path: str, query: Mapping[str, Any] | None = None, timeout: float = 5.0
) -> Any:
    """``GET {url}{path}?{query}`` with the query API's credential, and the decoded JSON answer.

    Raises:
        OSError: the collector cannot be reached, did not answer within ``timeout`` seconds, or
            answered an error (``urllib.error.HTTPError`` is an ``OSError``).
    """
    qs = urllib.parse.urlencode({k: v for k, v in (query or {}).items() if v})
    req = urllib.request.Request(f"{url}{path}" + (f"?{qs}" if qs else ""),
                                 headers=headers_for("api"))  # fmt: skip
    with _open(req, timeout) as r:
        return json.load(r)


def post_json(
    url: str, body: Any, timeout: float, headers: Mapping[str, str] | None = None
) -> None:
    """POST ``body`` as JSON to ``url`` (a full URL) with ``headers`` (no credential unless
    given: ``url`` may be anyone's); the answer is read and dropped.

    Raises:
        OSError: as :func:`get_json`.
    """
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    with _open(req, timeout) as resp:
        resp.read()


def _any_value(v: str | int | float | bool) -> dict[str, Any]:
    if isinstance(v, bool):
        return {"boolValue": v}
    if isinstance(v, int):
        return {"intValue": str(v)}  # int64 as a string, as OTLP/JSON allows
    if isinstance(v, float):
        return {"doubleValue": v}
    return {"stringValue": str(v)}


def _kvs(attrs: Attributes) -> list[dict[str, Any]]:
    return [{"key": k, "value": _any_value(v)} for k, v in attrs.items()]


def logs_request(
    resource: Attributes,
    events: Sequence[tuple[str, Attributes, int]],
    observed: int | None = None,
) -> dict[str, Any]:
    """An ``ExportLogsServiceRequest`` in OTLP/JSON: ``events`` are ``(event_name, attributes,
    time in ns since the epoch)``. Each record's ``observedTimeUnixNano`` is ``observed`` (ns;
    default: the latest event time): this reporter's "now", from which the collector estimates
    its clock offset."""
    seen = observed if observed is not None else max((t for _, _, t in events), default=0)
    records = [
        {
            "timeUnixNano": str(t),
            "observedTimeUnixNano": str(seen),
            "eventName": name,
            "attributes": _kvs(attrs),
        }
        for name, attrs, t in events
    ]
    return {
        "resourceLogs": [
            {
                "resource": {"attributes": _kvs(resource)},
                "scopeLogs": [{"scope": {"name": SCOPE_NAME}, "logRecords": records}],
            }
        ]
    }


def _routing(body: dict[str, Any]) -> dict[str, str]:
    """The routing header (:data:`~lastactive.conventions.HEADER_HOST_ID`) of an OTLP/JSON
    logs request: its first resource's ``host.id``, if it has one (none for a body that is no
    such request: the collector says what is wrong with it)."""
    try:
        for kv in body["resourceLogs"][0]["resource"]["attributes"]:
            if kv["key"] == ATTR_HOST_ID and isinstance(kv["value"]["stringValue"], str):
                return {HEADER_HOST_ID: kv["value"]["stringValue"]}
    except (LookupError, TypeError):
        pass
    return {}


def post_logs(
    url: str,
    body: dict[str, Any],
    timeout: float,
    spool: Spool | None = None,
    credential: Credential = "otlp",
) -> None:
    """POST an OTLP/JSON logs request to ``{url}/v1/logs`` within ``timeout`` seconds, with
    ``credential`` (:func:`headers_for`) and the routing header of its ``host.id``.

    With a ``spool``, a request the collector could take later (no answer, connection refused,
    429 or 5xx) is kept in it before the error is raised, and after a success the spooled ones
    are delivered with what is left of ``timeout`` (see :mod:`lastactive._spool`).

    Raises:
        OSError: as :func:`get_json`.
    """
    deadline = time.monotonic() + timeout
    headers = {**_routing(body), **headers_for(credential)}
    try:
        post_json(f"{url}/v1/logs", body, timeout, headers)
    except urllib.error.HTTPError as exc:
        if spool is not None and (exc.code == 429 or exc.code >= 500):
            spool.keep(body)
        raise
    except OSError:
        if spool is not None:
            spool.keep(body)
        raise
    if spool is not None:
        spool.deliver(
            lambda b: post_json(
                f"{url}/v1/logs", b, max(0.01, deadline - time.monotonic()), headers
            ),
            deadline,
        )
