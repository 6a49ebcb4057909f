"""One OTLP/HTTP JSON logs request, with the standard library only.

For short-lived reporters (hooks run once per event) that must finish in well under a second
even when the collector is down: importing the OpenTelemetry SDK and its exporters alone takes
about that long. Long-lived reporters use :class:`~lastactive.instrumentation.Reporter` and the SDK.
The encoding is OTLP/JSON (opentelemetry-proto ``docs/specification.md``).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

from lastactive.conventions import SCOPE_NAME

Attributes = Mapping[str, str | int | float | bool]


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
    resource: Attributes, events: Sequence[tuple[str, Attributes, int]]
) -> dict[str, Any]:
    """An ``ExportLogsServiceRequest`` in OTLP/JSON: ``events`` are ``(event_name, attributes,
    time in ns since the epoch)``."""
    records = [
        {"timeUnixNano": str(t), "eventName": name, "attributes": _kvs(attrs)}
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


def post_logs(url: str, body: dict[str, Any], timeout: float) -> None:
    """POST ``body`` to ``{url}/v1/logs``.

    Raises:
        OSError: the collector cannot be reached, did not answer within ``timeout`` seconds, or
            refused the request (``urllib.error.HTTPError`` is an ``OSError``).
    """
    req = urllib.request.Request(
        f"{url.rstrip('/')}/v1/logs",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
