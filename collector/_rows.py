"""An :class:`~lastactive.collector._record.EntityRecord` as a row of plain values and back:
the one codec every store uses (SQLite and PostgreSQL keep the same columns, in
:data:`~lastactive.collector._record.RECORD_FIELDS` order).

Container fields are JSON text in a row (``sources`` an object ``{source: ns}``, ``holds`` an
array ``[[kind:id, reported ns, until ns], ...]``, ``attributes`` an object); every other field
is a plain column. A row read back is checked field by field, so a hand-edited or corrupted row
never reaches state.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any, Final

from lastactive.collector._record import RECORD_FIELDS, EntityRecord, StreamRecord

__all__ = ["JSON_FIELDS", "ROW_ERRORS", "record_of", "row_of", "stream_of"]


def _pairs(text: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(json.loads(text).items()))


def _holds(text: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((str(k), int(t), int(u)) for k, t, u in json.loads(text)))


_KINDS: Final = frozenset({"session", "agent", "host"})
_INTS: Final = frozenset(
    {"first_seen", "last_seen", "input_bytes", "output_bytes", "status_time", "turn_time"}
)
_OPTIONAL_INTS: Final = frozenset({"pid", "exit_code"})

ROW_ERRORS: Final = (ValueError, TypeError, RecursionError)
"""What :func:`record_of` raises for a row that is not a valid record."""


def record_of(row: Iterable[Any]) -> EntityRecord:
    """A stored row (values in :data:`RECORD_FIELDS` order) as a record, its types checked.

    Raises:
        ValueError: a field of the wrong type, or JSON that does not decode.
        TypeError, RecursionError: JSON of the wrong shape, or nested too deep.
    """
    fields = dict(zip(RECORD_FIELDS, row, strict=True))
    if fields["kind"] not in _KINDS or not isinstance(fields["id"], str):
        raise ValueError(f"not an entity key: {fields['kind']!r}, {fields['id']!r}")
    for name, value in fields.items():
        if name in _INTS or (name in _OPTIONAL_INTS and value is not None):
            if not isinstance(value, int):
                raise ValueError(f"{name} is not an integer: {value!r}")
        elif name in _DECODE:
            fields[name] = _DECODE[name](value)
        elif value is not None and not isinstance(value, str):
            raise ValueError(f"{name} is not text: {value!r}")
    return EntityRecord(**fields)


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _sources_json(sources: tuple[tuple[str, int], ...]) -> str:
    # The per-record hot path of a commit: source names are the conventions' own (plain ASCII,
    # nothing to escape) and times are ints, so no JSON encoder is needed.
    return "{" + ",".join(f'"{source}":{t}' for source, t in sources) + "}"


def _object_json(pairs: tuple[tuple[str, Any], ...]) -> str:
    return _compact(dict(pairs)) if pairs else "{}"


def _array_json(items: tuple[Any, ...]) -> str:
    return _compact(items) if items else "[]"


_JSON: Final[dict[str, tuple[Callable[[Any], str], Callable[[str], Any]]]] = {
    "sources": (_sources_json, _pairs),
    "holds": (_array_json, _holds),
    "attributes": (_object_json, _pairs),
}
JSON_FIELDS: Final = tuple(_JSON)
"""The record fields stored as JSON text."""
_DECODE: Final = {name: decode for name, (_, decode) in _JSON.items()}
_FIELDS_OF: Final = attrgetter(*RECORD_FIELDS)
_ENCODE_AT: Final = tuple(
    (RECORD_FIELDS.index(name), encode) for name, (encode, _) in _JSON.items()
)


def row_of(r: EntityRecord) -> tuple[Any, ...]:
    """``r`` as a row: its fields in :data:`RECORD_FIELDS` order, containers as JSON text."""
    row = list(_FIELDS_OF(r))
    for i, encode in _ENCODE_AT:
        row[i] = encode(row[i])
    return tuple(row)  # sqlite3 binds tuples faster than lists


def stream_of(key: str, start: int, time: int, value: int | float | str) -> StreamRecord:
    """A stored counter baseline; ``value`` as a number, or as the text of one (a PostgreSQL
    ``numeric``: an integer stays an ``int``).

    Raises:
        ValueError: ``value`` is text that is no number.
    """
    if isinstance(value, str):
        value = int(value) if value.lstrip("-").isdigit() else float(value)
    return StreamRecord(key, start, time, value)
