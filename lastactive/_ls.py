"""``lastactive ls``: the sessions table (seed 002's ``mission ls``), read over the HTTP API."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any, Final

from lastactive.client import get_json

COLUMNS = (
    "SESSION", "HOST", "STATUS", "STATE", "LAST ACTIVE", "LAST ACTIVITY", "IDLE", "HIBERNATE",
    "HELD BY", "BYTES/S OUT/IN", "WHY",
)  # fmt: skip
"""LAST ACTIVE is the API's ``last_active`` (engagement); LAST ACTIVITY the latest activity that
ends idleness (``last_activity``) with its source."""

STATES: Final = ("active", "idle", "hibernated", "ended", "runaway", "stuck")
"""What ``--state`` selects on: the policy's state, or a flag."""


def _selected(s: dict[str, Any], state: str | None) -> bool:
    if state is None:
        return True
    if state in ("runaway", "stuck"):
        return bool(s[state])
    return bool(s["state"] == state)


def fetch_sessions(
    url: str,
    host: str | None = None,
    limit: int = 0,
    timeout: float = 5.0,
    state: str | None = None,
) -> list[dict[str, Any]]:
    """``GET {url}/v1/sessions`` (on ``host`` when given), page after page; most recent first,
    those in ``state`` (one of :data:`STATES`; all when ``None``), at most ``limit`` (0: all).

    Raises:
        OSError: the collector cannot be reached (``urllib.error.URLError`` is one).
    """
    sessions: list[dict[str, Any]] = []
    token = ""
    while True:
        want = limit - len(sessions) if limit and state is None else 0
        page = get_json(
            url, "/v1/sessions", {"host": host, "limit": want, "page_token": token}, timeout
        )
        sessions.extend(s for s in page["sessions"] if _selected(s, state))
        token = page.get("next_page_token", "")
        if not token or (limit and len(sessions) >= limit):
            return sessions[:limit] if limit else sessions


def human_seconds(seconds: float) -> str:
    """``42s``, ``3m``, ``5h``, ``2d``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def human_bytes(n: float) -> str:
    """``512``, ``1.5K``, ``3.2M`` (bytes, powers of 1024)."""
    for unit, size in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"


def _ago(iso: str, now: datetime) -> str:
    return human_seconds(max(0.0, (now - datetime.fromisoformat(iso)).total_seconds())) + " ago"


def _until(iso: str, now: datetime) -> str:
    return "in " + human_seconds(max(0.0, (datetime.fromisoformat(iso) - now).total_seconds()))


def row(s: dict[str, Any], now: datetime) -> tuple[str, ...]:
    """One table row. LAST ACTIVE is engagement (``last_active``); LAST ACTIVITY falls back
    like seed 002: activity (with its source), then last seen (liveness). STATE is the
    policy's (with runaway and stuck), HIBERNATE its deadline, HELD BY what holds the session
    up now, WHY the policy's reason in words."""
    proc = s["process"]
    if proc["status"] == "exited":
        status = f"exited {proc['exit_code']}"
    elif s["status"] != "active":
        status = s["status"]
    else:
        status = proc["status"] or "active"
    held = ",".join(sorted({h["kind"] for h in s["held_by"]})) or "-"
    active = _ago(s["last_active"], now) if s.get("last_active") else "-"
    if s["last_activity"]:
        last = f"{_ago(s['last_activity'], now)} ({s['last_source']})"
    else:
        last = f"{_ago(s['last_seen'], now)} (seen)"
    out_rate, in_rate = s["output_bytes_per_second"], s["input_bytes_per_second"]
    rates = f"{human_bytes(out_rate)}/{human_bytes(in_rate)}"
    state = ",".join([s["state"], *(flag for flag in ("runaway", "stuck") if s[flag])])
    if s["hibernate"]:
        hibernate = "due"
    elif s["hibernate_at"]:
        hibernate = _until(s["hibernate_at"], now)
    else:
        hibernate = "-"
    return (
        s["id"],
        s["host_id"] or "-",
        status,
        state,
        active,
        last,
        human_seconds(s["idle_seconds"]),
        hibernate,
        held,
        rates,
        s["reason"],
    )


def table(sessions: list[dict[str, Any]], now: datetime | None = None) -> str:
    """The sessions as an aligned text table, in the order given."""
    now = now or datetime.now(UTC)
    rows = [COLUMNS, *(row(s, now) for s in sessions)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def ls_command(
    url: str, host: str | None, limit: int, as_json: bool, state: str | None = None
) -> int:
    """``lastactive ls``: print the table (or the API's JSON); 1 when the collector is
    unreachable."""
    try:
        sessions = fetch_sessions(url, host, limit, state=state)
    except OSError as exc:
        print(f"lastactive ls: cannot reach the collector at {url}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(sessions, indent=2) if as_json else table(sessions))
    return 0
