"""The API documentation works without internet (its assets served by the collector) and says
what a client needs: the agent-events body, the 404s, the enums."""

from __future__ import annotations

import re
import urllib.request

from tests.helpers import CollectorClient


def text(c: CollectorClient, path: str) -> tuple[int, str]:
    with urllib.request.urlopen(c.http + path, timeout=10) as r:
        return r.status, r.read().decode()


def test_docs_and_redoc_load_only_what_the_collector_serves(collector: CollectorClient) -> None:
    for page in ("/docs", "/redoc"):
        status, html = text(collector, page)
        assert status == 200
        urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", html)
        assets = [u for u in urls if u.endswith((".js", ".css"))]
        assert assets, html
        assert not [u for u in urls if re.match(r"(https?:)?//", u)], urls  # no CDN
        for asset in assets:
            status, body = text(collector, asset)
            assert status == 200 and len(body) > 10_000, asset


def test_openapi_publishes_the_webhook_body_the_404s_and_the_enums(
    collector: CollectorClient,
) -> None:
    status, spec = collector.get("/openapi.json")
    assert status == 200
    post = spec["paths"]["/v1/agent-events"]["post"]
    body = post["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["action"]["enum"] == ["spawn", "progress", "complete", "error"]
    assert body["required"] == ["action", "sessionKey"]
    assert {"400", "403", "429", "503"} <= set(post["responses"])
    assert "404" in spec["paths"]["/v1/sessions/{session_id}"]["get"]["responses"]
    assert "404" in spec["paths"]["/v1/hosts/{host_id}"]["get"]["responses"]
    schemas = spec["components"]["schemas"]
    enums = {name: s["enum"] for name, s in schemas.items() if "enum" in s}
    assert enums["IdleState"] == ["active", "idle", "hibernated", "ended"]
    assert set(enums["AgentStatus"]) == {"active", "completed", "error"}
    assert {"prompt", "input", "output", "agent"} <= set(enums["Source"])
    entity = schemas["EntityOut"]["properties"]
    assert "IdleState" in str(entity["state"]) and "AgentTurn" in str(entity["turn"])
