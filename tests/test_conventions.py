"""docs/conventions.md mirrors lastactive/conventions.py."""

from __future__ import annotations

import re
from pathlib import Path

from lastactive import conventions as c

DOC = (Path(__file__).parents[1] / "docs" / "conventions.md").read_text()


def test_every_defined_name_is_documented() -> None:
    names = [
        getattr(c, n)
        for n in c.__all__
        if n.startswith(("ATTR_", "METRIC_", "EVENT_", "ENV_", "HEADER_"))
    ] + [
        c.SCOPE_NAME,
        c.DIRECTION_RECEIVE,
        c.DIRECTION_TRANSMIT,
    ]
    names += [*c.CLAUDE_CODE_EVENTS, *c.CLAUDE_CODE_METRICS, c.CLAUDE_CODE_INTERACTION_SPAN]
    missing = [n for n in names if f"`{n}`" not in DOC]
    assert not missing


def test_source_table_matches_the_module() -> None:
    rows = re.findall(r"^\| `(\w+)` \| (\w+) \| (\w+) \| (yes|no) \|", DOC, re.MULTILINE)
    documented = {src: (level, cls, trusted == "yes") for src, level, cls, trusted in rows}
    expected = {
        str(s): (str(i.level), str(i.activity_class), i.trusted) for s, i in c.SOURCES.items()
    }
    assert documented == expected
    assert set(c.SOURCES) == set(c.Source)


def test_every_seed_source_has_a_row() -> None:
    seeds = {
        "boot",
        "create",
        "start",
        "process",
        "ssh",
        "agent",
        "user",
        "prompt",
        "input",
        "output",
        "connection",
        "heartbeat",
    }
    assert seeds <= {str(s) for s in c.SOURCES}
