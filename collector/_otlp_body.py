"""Decode OTLP/HTTP request bodies: size limit, gzip, protobuf or OTLP/JSON.

OTLP/JSON differs from proto3 JSON mapping (opentelemetry-proto docs/specification.md,
"JSON Protobuf Encoding"): trace and span ids are hex strings, not base64. Enums as integers,
int64 as strings or numbers and unknown fields are all accepted by ``json_format.ParseDict``
with ``ignore_unknown_fields``, so the only rewrite needed is the ids.
"""

from __future__ import annotations

import base64
import binascii
import json
import zlib
from typing import Any, Final, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

CONTENT_PROTOBUF: Final = "application/x-protobuf"
CONTENT_JSON: Final = "application/json"

_ID_KEYS: Final = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)

M = TypeVar("M", bound=Message)


class BodyError(Exception):
    """A request body that cannot be used; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def media_type(content_type: str | None) -> str:
    """``application/json; charset=utf-8`` -> ``application/json``.

    Raises:
        BodyError: 415 when it is neither OTLP protobuf nor JSON.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media not in (CONTENT_PROTOBUF, CONTENT_JSON):
        raise BodyError(
            415,
            f"unsupported Content-Type {content_type!r}: OTLP/HTTP takes "
            f"{CONTENT_PROTOBUF} or {CONTENT_JSON}",
        )
    return media


def decompress(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip) without inflating past ``limit`` bytes.

    Raises:
        BodyError: 415 for another encoding, 400 for a corrupt gzip stream, 413 past ``limit``.
    """
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        return body
    if enc != "gzip":
        raise BodyError(415, f"unsupported Content-Encoding {encoding!r}: use gzip or none")
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise BodyError(400, f"corrupt gzip body: {exc}") from exc
    if len(out) > limit:
        raise BodyError(413, f"decompressed body exceeds the {limit}-byte limit")
    if not inflater.eof:
        raise BodyError(400, "corrupt gzip body: truncated stream")
    return out


def _hex_to_b64(obj: Any) -> None:
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in _ID_KEYS and isinstance(value, str):
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError as exc:
                    raise BodyError(400, f"{key} {value!r} is not a hex string") from exc
            else:
                _hex_to_b64(value)
    elif isinstance(obj, list):
        for item in obj:
            _hex_to_b64(item)


def parse(body: bytes, media: str, message_cls: type[M]) -> M:
    """Parse an OTLP request of ``message_cls`` from ``body`` in ``media`` encoding.

    Raises:
        BodyError: 400 with what was wrong when the body does not decode.
    """
    if media == CONTENT_PROTOBUF:
        try:
            return message_cls.FromString(body)
        except DecodeError as exc:
            raise BodyError(400, f"undecodable protobuf {message_cls.__name__}: {exc}") from exc
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BodyError(400, f"invalid JSON: {exc}") from exc
    except RecursionError:
        raise BodyError(400, "invalid JSON: nested too deeply") from None
    if not isinstance(obj, dict):
        raise BodyError(400, f"an OTLP/JSON {message_cls.__name__} must be a JSON object")
    try:
        _hex_to_b64(obj)
        return json_format.ParseDict(obj, message_cls(), ignore_unknown_fields=True)
    except (json_format.ParseError, binascii.Error, TypeError, ValueError) as exc:
        raise BodyError(400, f"invalid OTLP/JSON {message_cls.__name__}: {exc}") from exc
    except RecursionError:
        raise BodyError(
            400, f"invalid OTLP/JSON {message_cls.__name__}: nested too deeply"
        ) from None


def serialize(message: Message, media: str) -> bytes:
    """Encode a response in the request's media type (OTLP: the response matches it)."""
    if media == CONTENT_PROTOBUF:
        return message.SerializeToString()
    return json_format.MessageToJson(message, indent=None).encode()
