"""The sending path: each published frame serialized once and written to many sockets.

Everything the daemon writes to a client goes through `Fanout.write`, so
frames keep the order in which the hub produced them and one slow-consumer
check covers them all: a client whose write buffer passes
--max-client-buffer is closed with 4008 instead of slowing anyone down, and
resumes from its last position. Legacy clients owe at most one `updated`,
sent through their token bucket (hub.Throttle) by timers kept here.

The bound covers what websockets writes by itself too. It answers each PING
with a PONG from inside data_received, with no flow control, so a client
that sends PINGs and never reads could make the daemon queue without end;
`BoundedConnection` stops reading from such a client once its buffer passes
the bound and closes it. Every close here is bounded in time as well: a
close frame waits behind unread bytes, so `close_within` aborts the socket
when the closing handshake has not ended after CLOSE_TIMEOUT.

This is the only module that touches websockets' internals: a
connection's transport and write buffer, its protocol state and
extensions, its data_received callback, the Frame serializer, and the
handshake's request and response kept on the connection. setup.cfg pins
websockets below its next major version, and tests/test_fanout.py fails if
any of these moves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import ClassVar

from websockets.asyncio.server import ServerConnection, broadcast
from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.protocol import State

from . import protocol
from .hub import Batch
from .metrics import Metrics
from .session import V1, Session

CLOSE_TIMEOUT = 2.0
"""Seconds a closing handshake may take before the socket is cut (unread bytes delay it)."""


async def close_within(ws: ServerConnection, code: int, reason: str,
                       timeout: float = CLOSE_TIMEOUT) -> None:
    """Close with `code`, or abort the socket if that takes longer than `timeout`.

    websockets' close() first waits for room in the write buffer (drain), and
    a client that does not read never makes room: without the timeout the
    close would wait for the next keepalive, or forever with keepalive off.
    """
    try:
        await asyncio.wait_for(ws.close(code, reason), timeout)
    except (asyncio.TimeoutError, OSError):
        if ws.transport is not None:
            ws.transport.abort()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(ws.wait_closed(), timeout)


class BoundedConnection(ServerConnection):
    """A ServerConnection that stops reading from a client that does not read its answers.

    It also drops whatever a client sends after its request head and before
    the handshake's answer (see _request_head).

    `serve(create_connection=bounded_connection(limit))` builds every
    connection from a subclass with `max_buffer` set. `on_overflow` is the
    session's too_slow once its handler runs; until then the connection
    closes itself.
    """

    max_buffer: ClassVar[int] = 1 << 20

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.on_overflow: Callable[[], None] | None = None
        self.overflowed = False
        self._head_tail = b""
        self._head_done = False

    def data_received(self, data: bytes) -> None:
        if self.protocol.state is State.CONNECTING:
            data = self._request_head(data)
            if not data:
                return
        super().data_received(data)
        transport = self.transport
        if not self.overflowed and transport.get_write_buffer_size() > self.max_buffer:
            self.overflowed = True
            transport.pause_reading()
            if self.on_overflow is not None:
                self.on_overflow()
            else:
                self.loop.create_task(close_within(self, 4008, "too slow"))


    def _request_head(self, data: bytes) -> bytes:
        """Of the bytes before the handshake's answer, pass on only the request's head.

        A client may send nothing after its request until it has the answer
        (RFC 6455, 4.1), and no endpoint here takes a body or pipelining. Fed
        to websockets, such bytes are parsed as frames before the answer is
        sent, and the answer then trips an assertion that websockets logs as
        an ERROR with a traceback: 0.5 KB of log for a 90-byte request.
        """
        if self._head_done:
            return b""
        seen = self._head_tail + data
        end = seen.find(b"\r\n\r\n")
        if end < 0:
            self._head_tail = seen[-3:]
            return data
        self._head_done = True
        return data[:end + 4 - len(self._head_tail)]


def bounded_connection(max_buffer: int) -> type[ServerConnection]:
    """The connection class for a server whose clients may queue at most `max_buffer` bytes."""
    return type("BoundedConnection", (BoundedConnection,), {"max_buffer": max_buffer})


class Link:
    """A session's WebSocket connection: the Peer that session.py is handed."""

    __slots__ = ("closing", "ws")

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.closing: asyncio.Task[None] | None = None

    async def send(self, frame: bytes) -> None:
        await self.ws.send(frame, text=True)

    def close(self, code: int, reason: str) -> None:
        if self.closing is None:
            self.closing = asyncio.create_task(close_within(self.ws, code, reason))


Client = Session[Link]


class Fanout:
    """Writes frames to clients' transports without waiting, oldest first."""

    def __init__(self, metrics: Metrics, max_client_buffer: int):
        self.metrics = metrics
        self.max_client_buffer = max_client_buffer

    def deliver(self, batch: Batch[Client]) -> None:
        """Write a published batch: each frame once per client, legacy through its throttle."""
        for delivery in batch.deliveries:
            self.write(delivery.frame, delivery.clients)
        if batch.truncate_resyncs:
            self.metrics.resyncs.labels(reason="truncate").inc(batch.truncate_resyncs)
        if batch.legacy:
            now = asyncio.get_running_loop().time()
            for client in batch.legacy:
                self._legacy_changed(client, now)

    def write_one(self, client: Client, frame: bytes) -> None:
        """Queue one frame for one client (session.Rules.write)."""
        self.write(frame, [client], client.endpoint)

    def write(self, frame: bytes, clients: list[Client], endpoint: str = V1) -> None:
        """Write one frame to many clients: its WebSocket frame is serialized once.

        An uncompressed server frame is the same bytes for every client (no
        mask), so plain connections get those bytes straight on their
        transport; profiling (bench/RESULTS.md) put websockets' per-send frame
        building at a sixth of the fan-out time, the rest being the send
        syscall. Compressed connections still go through broadcast(). The
        daemon never fragments a message, so no send can be in progress.
        """
        limit = self.max_client_buffer
        wire = Frame(Opcode.TEXT, frame).serialize(mask=False)  # a server never masks
        compressed = []
        sent = 0
        for client in clients:
            ws = client.peer.ws
            transport = ws.transport
            if client.closing or transport is None or ws.protocol.state is not State.OPEN:
                continue
            if transport.get_write_buffer_size() > limit:
                client.too_slow()
            elif ws.protocol.extensions:
                compressed.append(ws)
            else:
                transport.write(wire)
                sent += 1
        if compressed:
            broadcast(compressed, frame, text=True)
        self.metrics.frames_sent.labels(endpoint=endpoint).inc(sent + len(compressed))

    def _legacy_changed(self, client: Client, now: float) -> None:
        assert client.throttle is not None
        delay = client.throttle.hit(now)
        if delay == 0.0:
            self._legacy_due(client)
        elif delay is not None:
            client.timer = asyncio.get_running_loop().call_later(delay, self._legacy_due, client)

    def _legacy_due(self, client: Client) -> None:
        """Send the `updated` a legacy client is owed; it is never closed as too slow.

        Its backlog is one bit: while earlier bytes still wait in its buffer,
        the owed `updated` waits for the next window instead of piling up (a
        client that never reads again is ended by the ping timeout).
        """
        assert client.throttle is not None
        client.timer = None
        loop = asyncio.get_running_loop()
        transport = client.peer.ws.transport
        if transport is not None and transport.get_write_buffer_size() > 0:
            client.throttle.defer()
            client.timer = loop.call_later(client.throttle.window, self._legacy_due, client)
            return
        client.throttle.fired(loop.time())
        self.write_one(client, protocol.LEGACY_UPDATED)


def forget_handshake(ws: ServerConnection) -> None:
    """Drop the handshake's headers and body: nothing reads them after the handshake checks.

    websockets keeps both for the connection's whole life. They are most of
    an idle connection's memory that is not the socket itself (bench: 16.6 ->
    13.8 KiB a connection), and the request's Cookie header holds a token.
    """
    if ws.request is not None:
        ws.request.headers = Headers()
    if ws.response is not None:
        ws.response.headers = Headers()
        ws.response.body = b""
