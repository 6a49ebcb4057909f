"""The one-shot reporters' spool: bounded, oldest dropped first, delivered oldest first, a
failed delivery keeps the rest, the observed time re-stamped at delivery."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from lastactive._spool import MAX_FILES, STALE_CLAIM_S, Spool
from lastactive.client import logs_request, post_logs
from tests.helpers import InProcessCollector


def _body(n: int) -> dict[str, Any]:
    return logs_request({"service.name": "t"}, [("e", {"session.id": f"s{n}", "n": n}, 1)])


def test_the_spool_keeps_the_newest_within_its_bound(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    for n in range(MAX_FILES + 10):
        spool.keep(_body(n))
    pending = spool.pending()
    assert len(pending) == MAX_FILES
    sent: list[int] = []

    def send(body: dict[str, Any]) -> None:
        (record,) = body["resourceLogs"][0]["scopeLogs"][0]["logRecords"]
        if len(sent) == 5:
            raise ConnectionRefusedError("down again")
        sent.append(int(record["attributes"][1]["value"]["intValue"]))
        assert int(record["observedTimeUnixNano"]) > time.time_ns() - 10**9  # re-stamped

    assert spool.deliver(send, time.monotonic() + 10) == 5
    assert sent == [10, 11, 12, 13, 14]  # the oldest kept, in order
    assert len(spool.pending()) == MAX_FILES - 5  # the failed one went back
    assert spool.deliver(send, time.monotonic() - 1) == 0  # no time left: nothing sent


def test_post_logs_spools_what_it_cannot_deliver_and_delivers_it_next_time(
    tmp_path: Path,
) -> None:
    spool = Spool(tmp_path)
    with pytest.raises(OSError):
        post_logs("http://127.0.0.1:9", _body(1), 0.5, spool)
    assert len(spool.pending()) == 1
    c = InProcessCollector().start()
    try:
        with pytest.raises(OSError, match="400"):  # refused as bad: retrying cannot help
            post_logs(c.http, {"resourceLogs": 5}, 2.0, spool)
        assert len(spool.pending()) == 1
        post_logs(c.http, _body(2), 2.0, spool)
        assert c.session("s1") is not None and c.session("s2") is not None
        assert spool.pending() == []
    finally:
        c.stop()


def test_a_delivery_killed_midway_is_pending_again_once_stale(tmp_path: Path) -> None:
    later = [0.0]
    spool = Spool(tmp_path, clock=lambda: time.time() + later[0])
    spool.keep(_body(1))
    (path,) = spool.pending()
    path.rename(path.with_name(f".{path.name}.4242.sending"))  # its sender was killed
    assert spool.pending() == []  # fresh: someone may still be sending it
    later[0] = STALE_CLAIM_S + 1
    assert spool.pending() == [path]
