"""``/healthz``, ``/readyz`` and ``/metrics`` as probes and Prometheus see them, on the real
HTTP server in this process."""

from __future__ import annotations

import gzip
import json
import urllib.request

from tests.helpers import CollectorClient, FlakyStore, InProcessCollector, last_input, wait_for


def fetch(
    c: CollectorClient, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(c.http + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read()


def test_ready_while_the_store_commits_unready_while_it_fails() -> None:
    store = FlakyStore()
    c = InProcessCollector(store, synchronous_commit=False).start()
    try:
        assert c.get("/healthz") == (200, {"status": "ok"})
        assert c.get("/readyz") == (200, {"status": "ready"})
        store.fail = 1_000_000  # a full disk, until freed
        last_input(c, "s1", 1)  # a change to commit
        _, headers, body = wait_for(
            lambda: (r := fetch(c, "/readyz"))[0] == 503 and r, what="unready"
        )
        assert json.loads(body) == {
            "status": "unready",
            "reason": "the state store failed: disk full",
        }
        assert headers["retry-after"] == "5"
        assert c.get("/healthz")[0] == 200  # alive all the same: do not restart it for this
        store.fail = 0
        wait_for(lambda: c.get("/readyz")[0] == 200, what="ready again")
        assert store.load() and c.session("s1") is not None  # nothing was lost meanwhile
    finally:
        c.stop()


def test_metrics_negotiate_format_gzip_and_names(collector: CollectorClient) -> None:
    last_input(collector, "s1", 1)
    status, headers, body = fetch(collector, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=0.0.4")
    assert b"lastactive_sessions" in body
    status, headers, body = fetch(
        collector, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert headers["content-type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith(b"# EOF")
    status, headers, body = fetch(collector, "/metrics", {"Accept-Encoding": "gzip"})
    assert headers.get("content-encoding") == "gzip"
    assert b"lastactive_sessions" in gzip.decompress(body)
    status, headers, body = fetch(collector, "/metrics?name%5B%5D=lastactive_sessions")
    samples = [ln for ln in body.decode().splitlines() if not ln.startswith("#")]
    assert status == 200 and samples
    assert all(ln.startswith("lastactive_sessions{") for ln in samples)  # that family only
