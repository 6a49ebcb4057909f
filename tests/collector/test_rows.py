"""The row codec: records survive a round trip, and every malformed row is refused by name."""

from __future__ import annotations

import pytest

from lastactive.collector._record import RECORD_FIELDS, EntityRecord
from lastactive.collector._rows import ROW_ERRORS, record_of, row_of

T = 1_795_386_498_990_693_429

RECORD = EntityRecord(
    kind="session",
    id="s1",
    host_id="h1",
    agent_id="a1",
    service_name="claude-code",
    first_seen=T - 60,
    last_seen=T,
    sources=(("input", T - 5), ("process", T)),
    input_bytes=3,
    output_bytes=4,
    pid=42,
    exit_code=None,
    holds=(("lease:ci", T - 9, 0),),
    status="active",
    status_time=T - 3,
    task="fix it",
    result=None,
    attributes=(("team", "infra"),),
    turn="working",
    turn_time=T - 2,
)


def _with(**fields: object) -> tuple[object, ...]:
    row = list(row_of(RECORD))
    for name, value in fields.items():
        row[RECORD_FIELDS.index(name)] = value
    return tuple(row)


def test_a_record_survives_a_round_trip() -> None:
    assert record_of(row_of(RECORD)) == RECORD


@pytest.mark.parametrize(
    "sources",
    [
        f' {{"input": {T - 5}, "process": {T}}} ',  # whitespace, as a hand edit may leave
        b'{"process":%d,"input":%d}' % (T, T - 5),  # a BLOB, keys out of order
    ],
)
def test_json_is_read_as_json_loads_reads_it(sources: str | bytes) -> None:
    assert record_of(_with(sources=sources)).sources == RECORD.sources


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("sources", '{"input":1} {}', "Extra data"),
        ("sources", '{"input":1.5}', "the time of source 'input' is not an integer"),
        ("sources", "[1]", "not a JSON object"),
        ("attributes", "[]", "not a JSON object"),
        ("holds", "[[1, 2]]", "not enough values"),
        ("first_seen", "1", "not an integer: first_seen = '1'"),
        ("turn_time", 1.0, "not an integer: turn_time = 1.0"),
        ("pid", "42", "not an integer: pid = '42'"),
        ("exit_code", True, "not an integer: exit_code = True"),
        ("host_id", 7, "not text: host_id = 7"),
        ("turn", b"x", "not text: turn = b'x'"),
        ("kind", "planet", "not an entity key: 'planet'"),
    ],
)
def test_a_malformed_field_is_refused_by_name(field: str, value: object, message: str) -> None:
    with pytest.raises(ROW_ERRORS, match=message):
        record_of(_with(**{field: value}))
