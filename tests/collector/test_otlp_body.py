"""OTLP/HTTP body decoding: the OTLP/JSON rules that differ from proto3 JSON, gzip, limits."""

from __future__ import annotations

import gzip
import json

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from lastactive.collector._otlp_body import CONTENT_JSON, BodyError, decompress, media_type, parse
from tests.helpers import otlp_json


def test_json_ids_are_hex_and_int64_strings_and_enums_as_integers() -> None:
    req = parse(
        json.dumps(otlp_json("s", 1_700_000_000_000_000_000)).encode(),
        CONTENT_JSON,
        ExportTraceServiceRequest,
    )
    span = req.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert span.span_id == bytes.fromhex("eee19b7ec3c1b174")
    assert span.parent_span_id == bytes.fromhex("eee19b7ec3c1b173")
    assert span.end_time_unix_nano == 1_700_000_000_000_000_000
    assert span.kind == 2
    assert span.attributes[1].value.int_value == 42


def test_log_record_ids_and_event_name() -> None:
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {
                                "traceId": "0102030405060708090a0b0c0d0e0f10",
                                "spanId": "0102030405060708",
                                "eventName": "lastactive.activity",
                                "timeUnixNano": 5,
                            }
                        ]
                    }
                ]
            }
        ]
    }
    req = parse(json.dumps(body).encode(), CONTENT_JSON, ExportLogsServiceRequest)
    lr = req.resource_logs[0].scope_logs[0].log_records[0]
    assert lr.trace_id == bytes(range(1, 17))
    assert lr.event_name == "lastactive.activity"
    assert lr.time_unix_nano == 5


def test_media_type_and_decompress() -> None:
    assert media_type("application/json; charset=utf-8") == CONTENT_JSON
    with pytest.raises(BodyError) as err:
        media_type(None)
    assert err.value.status == 415
    assert decompress(gzip.compress(b"abc"), "gzip", 10) == b"abc"
    assert decompress(b"abc", None, 10) == b"abc"
    with pytest.raises(BodyError) as err:
        decompress(gzip.compress(b"a" * 11), "gzip", 10)
    assert err.value.status == 413
