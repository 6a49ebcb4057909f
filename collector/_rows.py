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
import sys
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Final

from lastactive.collector._record import RECORD_FIELDS, EntityRecord, StreamRecord

__all__ = ["JSON_FIELDS", "ROW_ERRORS", "record_of", "row_of", "stream_of"]


_RAW_DECODE: Final = json.JSONDecoder().raw_decode


def _json(text: str) -> Any:
    """``json.loads(text)``, at a third of its cost for text as the stores write it (issue 15:
    ``loads`` spends ~0.8 us of ~1.3 skipping whitespace around a value with a regex)."""
    try:
        value, end = _RAW_DECODE(text)
    except (ValueError, TypeError):  # bytes, say: json.loads decodes them
        pass
    else:
        if end == len(text):
            return value
    return json.loads(text)  # whitespace around the value, or the error to raise


def _object(text: str) -> dict[str, Any]:
    value = _json(text)
    if type(value) is not dict:
        raise ValueError(f"not a JSON object: {text!r}")
    return value


def _pairs(text: str) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted(_object(text).items()))


def _sources(text: str) -> tuple[tuple[str, int], ...]:
    # Source names are few and shared by every entity: interned, a name costs its bytes once
    # rather than once per entity (issue 15: ~50 bytes each, 2-4 per session).
    pairs = []
    for src, t in _object(text).items():
        if type(t) is not int:
            raise ValueError(f"the time of source {src!r} is not an integer: {t!r}")
        pairs.append((_intern(src), t))
    pairs.sort()
    return tuple(pairs)


def _holds(text: str) -> tuple[tuple[str, int, int], ...]:
    return tuple(sorted((str(k), int(t), int(u)) for k, t, u in _json(text)))


_KINDS: Final = {"session": "session", "agent": "agent", "host": "host"}
_intern: Final = sys.intern

ROW_ERRORS: Final = (ValueError, TypeError, RecursionError)
"""What :func:`record_of` raises for a row that is not a valid record."""

_ROW: Final = (
    "kind", "id", "host_id", "agent_id", "service_name", "first_seen", "last_seen", "sources",
    "input_bytes", "output_bytes", "pid", "exit_code", "holds", "status", "status_time", "task",
    "result", "attributes", "turn", "turn_time",
)  # fmt: skip
assert _ROW == RECORD_FIELDS, "record_of unpacks rows in RECORD_FIELDS order"


def record_of(row: Sequence[Any]) -> EntityRecord:
    """A stored row (values in :data:`RECORD_FIELDS` order) as a record, its types checked.
    Ids of hosts and agents, service names and other repeated texts are interned (shared by
    every record that has them: the load of a million sessions keeps each once).

    Raises:
        ValueError: a field of the wrong type, or JSON that does not decode.
        TypeError, RecursionError: JSON of the wrong shape, or nested too deep.
    """
    (
        kind, id_, host_id, agent_id, service_name, first_seen, last_seen, sources, input_bytes,
        output_bytes, pid, exit_code, holds, status, status_time, task, result, attributes,
        turn, turn_time,
    ) = row  # fmt: skip
    if kind not in _KINDS or type(id_) is not str:
        raise ValueError(f"not an entity key: {kind!r}, {id_!r}")
    # Chained tests, not any() over a generator: a third of the cost (issue 15: the load of a
    # million rows).
    if not (
        type(first_seen) is int
        and type(last_seen) is int
        and type(input_bytes) is int
        and type(output_bytes) is int
        and type(status_time) is int
        and type(turn_time) is int
        and (pid is None or type(pid) is int)
        and (exit_code is None or type(exit_code) is int)
    ):
        raise ValueError(f"not an integer: {_first_wrong(row, _INT_AT, int)}")
    if not (
        (host_id is None or type(host_id) is str)
        and (agent_id is None or type(agent_id) is str)
        and (service_name is None or type(service_name) is str)
        and (status is None or type(status) is str)
        and (task is None or type(task) is str)
        and (result is None or type(result) is str)
        and (turn is None or type(turn) is str)
    ):
        raise ValueError(f"not text: {_first_wrong(row, _TEXT_AT, str)}")
    return EntityRecord(
        kind=_KINDS[kind],
        id=id_,
        host_id=None if host_id is None else _intern(host_id),
        agent_id=None if agent_id is None else _intern(agent_id),
        service_name=None if service_name is None else _intern(service_name),
        first_seen=first_seen,
        last_seen=last_seen,
        sources=_sources(sources),
        input_bytes=input_bytes,
        output_bytes=output_bytes,
        pid=pid,
        exit_code=exit_code,
        holds=_holds(holds) if holds != "[]" else (),
        status=None if status is None else _intern(status),
        status_time=status_time,
        task=task,
        result=result,
        attributes=_pairs(attributes) if attributes != "{}" else (),
        turn=None if turn is None else _intern(turn),
        turn_time=turn_time,
    )


_INT_AT: Final = tuple(
    (i, name in ("pid", "exit_code"))
    for i, name in enumerate(RECORD_FIELDS)
    if name in ("first_seen", "last_seen", "input_bytes", "output_bytes", "status_time",
                "turn_time", "pid", "exit_code")
)  # fmt: skip
_TEXT_AT: Final = tuple(
    (i, True)
    for i, name in enumerate(RECORD_FIELDS)
    if name in ("host_id", "agent_id", "service_name", "status", "task", "result", "turn")
)


def _first_wrong(row: Sequence[Any], at: tuple[tuple[int, bool], ...], kind: type) -> str:
    """The first field of ``row`` among ``at`` (index, may be None) not of type ``kind``."""
    for i, optional in at:
        value = row[i]
        if not (optional and value is None) and type(value) is not kind:
            return f"{RECORD_FIELDS[i]} = {value!r}"
    return "?"


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


_ENCODERS: Final[dict[str, Callable[[Any], str]]] = {
    "sources": _sources_json,
    "holds": _array_json,
    "attributes": _object_json,
}
JSON_FIELDS: Final = tuple(_ENCODERS)
"""The record fields stored as JSON text."""
_FIELDS_OF: Final = attrgetter(*RECORD_FIELDS)
_ENCODE_AT: Final = tuple((RECORD_FIELDS.index(name), encode) for name, encode in _ENCODERS.items())


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
