"""``lastactive proxy``: an asyncio TCP relay instrumented with :mod:`._proxy`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final

from lastactive.instrumentation._proxy import Connection, ProxyInstrument

_log = logging.getLogger(__name__)

CHUNK: Final = 65536


async def _pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hook: Callable[[bytes], None]
) -> None:
    read, write, drain = reader.read, writer.write, writer.drain
    while data := await read(CHUNK):
        hook(data)
        write(data)
        await drain()
    if writer.can_write_eof():
        with contextlib.suppress(OSError):
            writer.write_eof()


async def relay(
    client_r: asyncio.StreamReader,
    client_w: asyncio.StreamWriter,
    target: tuple[str, int],
    instrument: ProxyInstrument,
) -> None:
    """Relay one client to ``target`` until either side closes; instrument it all."""
    peer = client_w.get_extra_info("peername") or ("?", 0)
    try:
        server_r, server_w = await asyncio.open_connection(*target)
    except OSError as exc:
        _log.warning("cannot reach %s:%s for %s: %s", *target, peer, exc)
        client_w.close()
        return
    conn: Connection = instrument.connect(str(peer[0]), int(peer[1]))
    upstream = asyncio.create_task(_pump(client_r, server_w, conn.client_data))
    downstream = asyncio.create_task(_pump(server_r, client_w, conn.server_data))
    reason = "client closed"
    try:
        done, _ = await asyncio.wait({upstream, downstream}, return_when=asyncio.FIRST_COMPLETED)
        first = done.pop()
        if first is downstream:
            reason = "server closed"
        if first.exception() is not None:
            reason = f"error: {first.exception()}"
        # Let the other direction finish what is in flight, briefly, then close both.
        other = downstream if first is upstream else upstream
        with contextlib.suppress(TimeoutError, OSError, asyncio.CancelledError):
            await asyncio.wait_for(other, 1.0)
    finally:
        for task in (upstream, downstream):
            task.cancel()
        for w in (server_w, client_w):
            w.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await w.wait_closed()
        conn.close(reason)


async def _run(
    port: int,
    instrument: ProxyInstrument,
    ready: Callable[[int], None] | None,
    stop: asyncio.Event | None,
) -> None:
    """Announce ``port``, then call the instrument's heartbeat every
    ``instrument.heartbeat_interval`` seconds until ``stop``."""
    if ready is not None:
        ready(port)
    stop = stop or asyncio.Event()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), instrument.heartbeat_interval)
        instrument.heartbeat()


async def serve_proxy(
    listen: tuple[str, int],
    target: tuple[str, int],
    instrument: ProxyInstrument,
    *,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Accept on ``listen`` (port 0: any), relay each client to ``target``, report presence
    every ``instrument.heartbeat_interval`` seconds while clients are connected, until ``stop``
    is set."""
    server = await asyncio.start_server(
        lambda r, w: relay(r, w, target, instrument), *listen, limit=CHUNK
    )
    async with server:
        await _run(server.sockets[0].getsockname()[1], instrument, ready, stop)


WS_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
"""The largest WebSocket message a browser may send through the proxy (bytes; a larger one
closes its connection with 1009, "message too big"). noVNC's are keystrokes, pointer moves and
clipboard text: far smaller."""
WS_MAX_QUEUE: Final = 4
"""Messages read ahead per connection: the proxy holds at most this x WS_MAX_MESSAGE_BYTES."""


async def serve_websocket(
    listen: tuple[str, int],
    target: tuple[str, int],
    instrument: ProxyInstrument,
    *,
    ready: Callable[[int], None] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """A WebSocket front (as noVNC uses, subprotocol ``binary``) relaying to a TCP ``target``:
    each message from the browser is client data, each TCP chunk one binary message back."""
    from websockets.asyncio.server import ServerConnection, serve
    from websockets.exceptions import ConnectionClosed

    async def handle(ws: ServerConnection) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*target)
        except OSError as exc:
            _log.warning("cannot reach %s:%s: %s", *target, exc)
            await ws.close(1011, "target unreachable")
            return
        peer = ws.remote_address or ("?", 0)
        conn = instrument.connect(str(peer[0]), int(peer[1]))

        async def upstream() -> None:
            async for message in ws:
                data = message if isinstance(message, bytes) else message.encode()
                conn.client_data(data)
                server_w.write(data)
                await server_w.drain()

        async def downstream() -> None:
            while data := await server_r.read(CHUNK):
                conn.server_data(data)
                await ws.send(data)

        up, down = asyncio.create_task(upstream()), asyncio.create_task(downstream())
        reason = "client closed"
        try:
            done, _ = await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
            first = done.pop()
            if first is down:
                reason = "server closed"
            failure = first.exception()
            if failure is not None and not isinstance(failure, ConnectionClosed):
                reason = f"error: {failure}"
        finally:
            for task in (up, down):
                task.cancel()
            server_w.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await server_w.wait_closed()
            await ws.close()
            conn.close(reason)

    async with serve(
        handle, *listen, subprotocols=["binary"],  # type: ignore[list-item]
        max_size=WS_MAX_MESSAGE_BYTES, max_queue=WS_MAX_QUEUE,
    ) as server:  # fmt: skip
        port = next(iter(server.sockets)).getsockname()[1]
        await _run(port, instrument, ready, stop)
