"""``collector/_server.py``: the HTTP listening socket."""

from __future__ import annotations

import asyncio
import socket

from lastactive.collector._server import listening_socket


def test_connections_accepted_on_the_http_socket_have_tcp_nodelay() -> None:
    """asyncio sets TCP_NODELAY only on connections of a socket made with IPPROTO_TCP; without
    it, each small response waits for Nagle and the client's delayed ACK."""

    async def accept_one() -> int:
        seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def handle(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = writer.get_extra_info("socket")
            seen.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        sock = listening_socket("127.0.0.1", 0)
        server = await asyncio.start_server(handle, sock=sock)
        async with server:
            _, writer = await asyncio.open_connection(*sock.getsockname())
            nodelay = await asyncio.wait_for(seen, 5)
            writer.close()
        return nodelay

    assert asyncio.run(accept_one()) == 1
