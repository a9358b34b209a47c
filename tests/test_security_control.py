"""Clients that never read: control frames are bounded like data, and every close completes.

A raw socket speaks the WebSocket handshake, then sends frames and never
reads a byte. Its receive buffer and the daemon's send buffer are made
small, as on a congested path, so what the daemon queues stays in its own
(user-space) write buffer, where --max-client-buffer must hold it.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest
from websockets.frames import Frame, Opcode

from bridge.server import Client, Daemon
from tests.timing import scaled, wait_for

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
LIMIT = 64 * 1024
READ_SLACK = 300 * 1024  # one read's worth of PONGs (asyncio reads up to 256 KiB at a time)
HANDSHAKE = ("GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
             "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n")
PING = Frame(Opcode.PING, b"p" * 125).serialize(mask=True)


async def _deaf_client(daemon: Daemon) -> tuple[socket.socket, Client]:
    """An open /v1 WebSocket whose client never reads; returns it and the daemon's side."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", daemon.port))
    await loop.sock_sendall(sock, HANDSHAKE.encode())
    response = b""
    while b"\r\n\r\n" not in response:
        response += await asyncio.wait_for(loop.sock_recv(sock, 4096), scaled(10))
    assert response.startswith(b"HTTP/1.1 101 "), response[:60]
    port = sock.getsockname()[1]

    def server_side() -> Client | None:
        return next((c for c in daemon.clients
                     if c.peer.ws.remote_address and c.peer.ws.remote_address[1] == port), None)

    await wait_for(lambda: server_side() is not None, what="the daemon to accept the client")
    client = server_side()
    assert client is not None
    client.peer.ws.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    return sock, client


async def _send_until_blocked(sock: socket.socket, data: bytes, total: int) -> int:
    """Send `data` repeatedly up to `total` bytes; stop early once the daemon stops reading."""
    loop = asyncio.get_running_loop()
    chunk = data * max(1, 16384 // len(data))
    sent = 0
    try:
        while sent < total:
            await asyncio.wait_for(loop.sock_sendall(sock, chunk), scaled(3))
            sent += len(chunk)
    except (asyncio.TimeoutError, ConnectionError):
        pass
    return sent


async def test_pings_from_a_client_that_never_reads_are_bounded_and_it_is_closed(
    start_daemon: StartDaemon,
) -> None:
    """32 MiB of PINGs, no reads, no keepalive: the daemon queues at most the bound, closes it."""
    daemon = await start_daemon(max_client_buffer=LIMIT, ping_interval=0)
    sock, client = await _deaf_client(daemon)
    transport = client.peer.ws.transport
    largest = 0
    sending = asyncio.create_task(_send_until_blocked(sock, PING, 32 << 20))
    while not sending.done():
        largest = max(largest, transport.get_write_buffer_size())
        await asyncio.sleep(0.001)
    await sending
    assert largest <= LIMIT + READ_SLACK, largest
    await wait_for(lambda: client not in daemon.clients, timeout=scaled(30),
                   what="the daemon to close the client that never reads")
    assert daemon.metrics.registry.get_sample_value("bridge_slow_consumer_closes_total") == 1
    assert transport.is_closing()
    sock.close()


async def test_close_at_the_auth_deadline_completes_however_full_the_buffer(
    start_daemon: StartDaemon,
) -> None:
    """4001 to a client with 200 KiB of unread PONGs: the socket ends within the close timeout."""
    daemon = await start_daemon(auth_timeout=1.0, ping_interval=0)
    sock, client = await _deaf_client(daemon)
    await _send_until_blocked(sock, PING, 200 * 1024)
    await wait_for(lambda: client.closing, timeout=scaled(10), what="the auth deadline")
    await wait_for(lambda: client not in daemon.clients, timeout=scaled(15),
                   what="the 4001 close to end the socket")
    assert client.peer.ws.transport.is_closing()
    sock.close()


async def test_shutdown_ends_a_client_that_never_reads_within_the_close_timeout(
    start_daemon: StartDaemon,
) -> None:
    """stop() closes a deaf client with 1001 and cuts it after the close timeout, not the drain."""
    daemon = await start_daemon(ping_interval=0, drain_seconds=600,
                                allow_anonymous=("example_task",))
    sock, client = await _deaf_client(daemon)
    await _send_until_blocked(sock, PING, 200 * 1024)
    assert client.peer.ws.transport.get_write_buffer_size() > 32 * 1024
    await asyncio.wait_for(daemon.stop(), scaled(30))  # --drain-seconds 600 would hang it
    assert not daemon.clients
    sock.close()
