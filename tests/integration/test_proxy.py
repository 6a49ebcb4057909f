"""``lastactive proxy`` with real peers: a real VNC server (Debian's Xvfb + x11vnc) and a real
VNC client (vncdotool); garbage RFB; many connections at once on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lastactive.instrumentation._reporter import MIN_HOLD_TTL_S
from tests.helpers import CollectorClient, free_port, listening, stop_process, wait_for

needs_vnc = pytest.mark.skipif(
    shutil.which("Xvfb") is None or shutil.which("x11vnc") is None,
    reason="needs Debian's xvfb and x11vnc (.ci/run installs them)",
)


@pytest.fixture
def vnc_server() -> Iterator[int]:
    display = 50 + os.getpid() % 40
    xvfb = subprocess.Popen(
        ["Xvfb", f":{display}", "-screen", "0", "320x240x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = free_port()
    vnc = None
    try:
        wait_for(lambda: Path(f"/tmp/.X11-unix/X{display}").exists(), what="Xvfb")
        vnc = subprocess.Popen(
            [
                "x11vnc",
                "-display",
                f":{display}",
                "-rfbport",
                str(port),
                "-localhost",
                "-nopw",
                "-forever",
                "-shared",
                "-quiet",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: listening(port), what="x11vnc listening")
        yield port
    finally:
        for proc in (vnc, xvfb):
            if proc is not None:
                stop_process(proc)  # x11vnc outlived SIGTERM by 20 s once on a loaded machine


def start_proxy(
    collector: CollectorClient, env: dict[str, str], target: int, protocol: str, sid: str
) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lastactive",
            "proxy",
            "--listen",
            "127.0.0.1:0",
            "--target",
            f"127.0.0.1:{target}",
            "--protocol",
            protocol,
            "--session-id",
            sid,
            "--endpoint",
            f"http://{collector.grpc_target}",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    match = re.search(r"on 127\.0\.0\.1:(\d+)", proc.stdout.readline())
    assert match, "no ready line"
    return proc, int(match[1])


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    proc.wait(timeout=20)
    assert proc.stdout is not None
    proc.stdout.close()


@needs_vnc
def test_vnc_viewer_polling_is_presence_and_keys_and_pointer_are_engagement(
    collector: CollectorClient, lastactive_env: dict[str, str], vnc_server: int
) -> None:
    from vncdotool import api

    proxy, port = start_proxy(collector, lastactive_env, vnc_server, "rfb", "desk")
    try:
        client: Any = api.connect(f"127.0.0.1::{port}", password=None)
        try:
            for _ in range(3):
                client.refreshScreen()  # a viewer polling for frames
            s = wait_for(
                lambda: (
                    (s := collector.session("desk"))
                    and s["held_by"]
                    and s["input_bytes"]
                    and s["output_bytes"]
                    and s
                ),
                what="presence and bytes",
            )
            assert [h["kind"] for h in s["held_by"]] == ["client"]
            assert "connection" in s["sources"]
            assert s["last_active"] is None  # connected but idle: not a user
            assert s["input_bytes"] > 0 and s["output_bytes"] > 0

            client.keyPress("a")
            client.mouseMove(10, 10)
            client.mouseMove(20, 30)
            engaged = wait_for(
                lambda: (s := collector.session("desk")) and s["last_active"] and s,
                what="engagement",
            )
            assert engaged["last_source"] == "input"
            # The answer to this request follows the key and pointer bytes through the proxy
            # (one ordered TCP stream), so when it is back every input has been seen.
            client.refreshScreen()
            all_input_seen = datetime.now(UTC)
        finally:
            client.disconnect()
            api.shutdown()
        done = wait_for(
            lambda: (s := collector.session("desk")) and not s["held_by"] and s,
            what="presence ended",
        )
        closed = wait_for(
            lambda: (s := collector.session("desk")) and "telemetry" in s["sources"] and s,
            what="the closed connection's span",
        )
        # Presence ending (the disconnect, the span's end) is not engagement: last_active
        # stays at the last input, which the proxy saw before the disconnect.
        first = datetime.fromisoformat(engaged["last_active"])
        for s in (done, closed):
            assert first <= datetime.fromisoformat(s["last_active"]) < all_input_seen
    finally:
        stop(proxy)


async def _echo_server() -> tuple[asyncio.Server, int, list[bytes]]:
    received: list[bytes] = []

    async def handle(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while data := await r.read(65536):
            received.append(data)
            w.write(data)
            await w.drain()
        w.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1], received


def test_garbage_rfb_is_relayed_exactly_and_classification_stops(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    garbage = b"RFB 003.008\n\x01\x01" + bytes([250]) + os.urandom(5000) + b"tail"

    async def scenario() -> bytes:
        server, port, received = await _echo_server()
        proxy, pport = start_proxy(collector, lastactive_env, port, "rfb", "junk")
        try:
            r, w = await asyncio.open_connection("127.0.0.1", pport)
            w.write(garbage[:7])
            await w.drain()
            w.write(garbage[7:])
            await w.drain()
            echoed = await r.readexactly(len(garbage))
            w.close()
            await w.wait_closed()
        finally:
            stop(proxy)
            server.close()
        assert b"".join(received) == garbage  # the server saw exactly the bytes sent
        return echoed

    assert asyncio.run(scenario()) == garbage
    s = wait_for(
        lambda: (s := collector.session("junk")) and "telemetry" in s["sources"] and s,
        what="the connection span",
    )
    assert s["last_active"] is None  # garbage is not a user
    assert s["input_bytes"] == len(garbage)


def test_hundreds_of_connections_with_every_byte_accounted(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    n, size = 300, 20_000

    async def scenario() -> None:
        server, port, _ = await _echo_server()
        proxy, pport = start_proxy(collector, lastactive_env, port, "raw", "many")

        async def one(i: int) -> None:
            r, w = await asyncio.open_connection("127.0.0.1", pport)
            payload = bytes([i % 256]) * size
            w.write(payload)
            await w.drain()
            assert await r.readexactly(size) == payload
            w.close()
            await w.wait_closed()

        try:
            await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), 60)
        finally:
            stop(proxy)
            server.close()

    asyncio.run(scenario())
    s = wait_for(
        lambda: (s := collector.session("many")) and s["input_bytes"] == n * size and s,
        timeout=30,
        what="all bytes counted",
    )
    assert s["output_bytes"] == n * size
    assert s["held_by"] == []  # every connection closed


def test_a_dead_proxy_does_not_hold_its_session_up(
    collector: CollectorClient, lastactive_env: dict[str, str]
) -> None:
    """Client holds are renewed at each heartbeat and lapse by themselves (``hold_ttl``) when
    the proxy dies without closing its connections (SIGKILL: no release is ever sent)."""
    with socket.socket() as target, socket.socket() as client:
        target.bind(("127.0.0.1", 0))
        target.listen()  # the kernel completes the proxy's connection; nothing to serve
        proxy, port = start_proxy(collector, lastactive_env, target.getsockname()[1], "raw", "dead")
        try:
            client.connect(("127.0.0.1", port))
            client.sendall(b"hi")

            def until() -> float:
                s = collector.session("dead")
                holds = [] if s is None else s["held_by"]
                return datetime.fromisoformat(holds[0]["until"]).timestamp() if holds else 0.0

            first = wait_for(until, what="the client hold")
            wait_for(lambda: until() > first, what="the hold renewed by a heartbeat")
            proxy.kill()
            proxy.wait()
            assert until() > 0  # still standing: nobody released it
            wait_for(lambda: not until(), timeout=MIN_HOLD_TTL_S + 10, what="the hold lapsed")
        finally:
            if proxy.poll() is None:
                proxy.kill()
                proxy.wait()
            assert proxy.stdout is not None
            proxy.stdout.close()


@needs_vnc
def test_websocket_front_classifies_rfb_inside(
    collector: CollectorClient, lastactive_env: dict[str, str], vnc_server: int
) -> None:
    from websockets.asyncio.client import connect

    proxy, port = start_proxy(collector, lastactive_env, vnc_server, "websocket", "novnc")

    async def viewer() -> None:
        async with connect(
            f"ws://127.0.0.1:{port}",
            subprotocols=["binary"],  # type: ignore[list-item]
            max_size=None,
        ) as ws:
            buf = b""

            async def read(n: int) -> bytes:
                nonlocal buf
                while len(buf) < n:
                    msg = await ws.recv()
                    buf += msg if isinstance(msg, bytes) else msg.encode()
                out, buf = buf[:n], buf[n:]
                return out

            assert (await read(12)).startswith(b"RFB 003.")
            await ws.send(b"RFB 003.008\n")
            count = (await read(1))[0]
            assert 1 in await read(count)  # security type None offered (-nopw)
            await ws.send(bytes([1]))
            assert await read(4) == b"\0\0\0\0"  # SecurityResult OK
            await ws.send(b"\x01")  # ClientInit, shared
            header = await read(24)
            await read(int.from_bytes(header[20:24], "big"))  # ServerInit name
            for _ in range(3):  # polling only
                await ws.send(bytes([3, 1, 0, 0, 0, 0, 0, 10, 0, 10]))
            wait_for(
                lambda: (s := collector.session("novnc")) and s["held_by"] and s,
                what="presence over websocket",
            )
            s = collector.session("novnc")
            assert s is not None and s["last_active"] is None
            await ws.send(bytes([4, 1, 0, 0, 0, 0, 0, 0x61]))  # KeyEvent 'a' down
            wait_for(
                lambda: (s := collector.session("novnc")) and s["last_active"],
                what="engagement over websocket",
            )

    try:
        asyncio.run(viewer())
        wait_for(
            lambda: not (collector.session("novnc") or {"held_by": [1]})["held_by"],
            what="presence ended",
        )
    finally:
        stop(proxy)


@needs_vnc
def test_websocket_front_bounds_a_message(
    collector: CollectorClient, lastactive_env: dict[str, str], vnc_server: int
) -> None:
    """A browser's message past WS_MAX_MESSAGE_BYTES closes its connection (1009), without the
    proxy holding it; the next connection is served."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    from lastactive.instrumentation._proxy_relay import WS_MAX_MESSAGE_BYTES

    proxy, port = start_proxy(collector, lastactive_env, vnc_server, "websocket", "big")

    async def oversized() -> int | None:
        async with connect(f"ws://127.0.0.1:{port}", subprotocols=["binary"],  # type: ignore[list-item]
                           max_size=None) as ws:  # fmt: skip
            await ws.recv()  # the server's RFB version
            await ws.send(b"\0" * (WS_MAX_MESSAGE_BYTES + 1))
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    async def normal() -> bytes:
        async with connect(f"ws://127.0.0.1:{port}", subprotocols=["binary"]) as ws:  # type: ignore[list-item]
            msg = await ws.recv()
            return msg if isinstance(msg, bytes) else msg.encode()

    try:
        assert asyncio.run(oversized()) == 1009
        assert asyncio.run(normal()).startswith(b"RFB 003.")
    finally:
        stop(proxy)
