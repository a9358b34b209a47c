"""A lean WebSocket load generator: many subscribers in one process, raw asyncio protocols.

`python -m bench.wsclient '<json config>'` opens `count` connections to a
daemon (or any server speaking the same frames), spread over the given source
addresses, subscribes each one, and records the arrival time of every frame
that names a row. It is driven by one JSON command per line on stdin and
answers one JSON line on stdout:

    {"cmd": "connect"}  -> {"connected": n, "failed": k, "seconds": s}
    {"cmd": "counts"}   -> {"frames": n}          frames received so far
    {"cmd": "collect"}  -> {"arrivals": {key: base64 float64 array}, "frames": n}
    {"cmd": "quit"}     -> closes every connection and exits

It is lean on purpose: a load generator that costs more CPU than the server
it measures hides the server's time behind its own. No library frame objects:
the HTTP upgrade is one fixed request, server frames are parsed with a few
slices, client frames are built once (a zero mask is valid RFC 6455 masking).
Arrival times are time.monotonic() (CLOCK_MONOTONIC), which every process on
the machine shares, so the harness subtracts them from its commit times.
"""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import time
from array import array
from typing import Any

EVENT = b'{"type":"event"'
SUBSCRIBED = b'"type":"subscribed"'
PKS = b'"pks":["'
MAX_CONNECTING = 64


def client_frame(text: str, opcode: int = 0x1) -> bytes:
    """A masked client frame (zero mask key), built once and reused."""
    payload = text.encode()
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    else:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    return header + b"\x00\x00\x00\x00" + payload


class Worker:
    """All connections of this process and what they received."""

    def __init__(self, config: dict[str, Any]):
        self.host = config.get("host", "127.0.0.1")
        self.port = int(config["port"])
        self.path = config.get("path", "/v1")
        self.count = int(config["count"])
        self.sources = config.get("sources") or ["127.0.0.1"]
        self.channels = config.get("channels", [])
        self.key_field = b'"' + config.get("key", "pks").encode() + b'":["'
        self.record = bool(config.get("record", True))
        self.cookie = config.get("cookie")
        self.deflate = bool(config.get("deflate"))
        self.request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            + (f"Cookie: {self.cookie}\r\n" if self.cookie else "")
            + ("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
               if config.get("deflate") else "")
            + "\r\n"
        ).encode()
        self.hello = b"".join(
            client_frame(json.dumps({"type": "subscribe", "channel": c})) for c in self.channels)
        self.subscribe_acks = len(self.channels)
        self.conns: list[Conn] = []
        self.frames = 0
        self.arrivals: dict[bytes, array[float]] = {}

    async def connect(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        started = time.monotonic()
        gate = asyncio.Semaphore(MAX_CONNECTING)
        failed = 0

        async def one(i: int) -> None:
            nonlocal failed
            async with gate:
                source = self.sources[i % len(self.sources)]
                try:
                    _, conn = await asyncio.wait_for(loop.create_connection(
                        lambda: Conn(self), self.host, self.port, local_addr=(source, 0)), 30)
                    await asyncio.wait_for(conn.ready, 60)
                    self.conns.append(conn)
                except (OSError, asyncio.TimeoutError, ConnectionError):
                    failed += 1

        await asyncio.gather(*(one(i) for i in range(self.count)))
        return {"connected": len(self.conns), "failed": failed,
                "seconds": time.monotonic() - started}

    def on_frame(self, conn: Conn, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x1:
            if payload.startswith(EVENT) or payload == b"updated":
                self.frames += 1
                if self.record:
                    key = self._key(payload)
                    arr = self.arrivals.get(key)
                    if arr is None:
                        arr = self.arrivals[key] = array("d")
                    arr.append(now)
                if conn.acks_left and payload == b"updated":
                    conn.acked()
            elif conn.acks_left and (SUBSCRIBED in payload or self.deflate):
                # A compressed `subscribed` cannot be read without inflating it: any text
                # frame before the first event is the answer to our subscribe.
                conn.acked()
        elif opcode == 0x9:  # ping: answer with a pong carrying the same payload
            if conn.transport is not None:
                conn.transport.write(bytes([0x8A, 0x80 | len(payload)]) + b"\x00" * 4 + payload)
        elif opcode == 0x8 and conn.transport is not None:
            conn.transport.close()

    def _key(self, payload: bytes) -> bytes:
        if payload == b"updated":
            return b"updated"
        start = payload.find(self.key_field)
        if start < 0:
            return b"?"
        start += len(self.key_field)
        return payload[start:payload.find(b'"', start)]

    def collect(self) -> dict[str, Any]:
        out = {k.decode(): base64.b64encode(v.tobytes()).decode()
               for k, v in self.arrivals.items()}
        self.arrivals = {}
        return {"arrivals": out, "frames": self.frames}


class Conn(asyncio.Protocol):
    """One subscriber: the handshake, then frames parsed in place."""

    __slots__ = ("acks_left", "buf", "open", "ready", "transport", "worker")

    def __init__(self, worker: Worker):
        self.worker = worker
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False
        self.acks_left = worker.subscribe_acks or 1
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass
        transport.write(self.worker.request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed before subscribed"))

    def acked(self) -> None:
        self.acks_left -= 1
        if self.acks_left == 0 and not self.ready.done():
            self.ready.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf + data if self.buf else data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(buf[:end].decode(errors="replace")))
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            buf = buf[end + 4:]
            if self.worker.hello:
                assert self.transport is not None
                self.transport.write(self.worker.hello)
        i, n = 0, len(buf)
        worker = self.worker
        while n - i >= 2:
            length = buf[i + 1] & 0x7F
            head = 2
            if length == 126:
                if n - i < 4:
                    break
                length = int.from_bytes(buf[i + 2:i + 4], "big")
                head = 4
            elif length == 127:
                if n - i < 10:
                    break
                length = int.from_bytes(buf[i + 2:i + 10], "big")
                head = 10
            if n - i < head + length:
                break
            worker.on_frame(self, buf[i] & 0x0F, buf[i + head:i + head + length], now)
            i += head + length
        self.buf = buf[i:]


async def main(config: dict[str, Any]) -> None:
    worker = Worker(config)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    while line := await reader.readline():
        cmd = json.loads(line)["cmd"]
        if cmd == "connect":
            reply(await worker.connect())
        elif cmd == "counts":
            reply({"frames": worker.frames, "open": sum(c.transport is not None
                                                        for c in worker.conns)})
        elif cmd == "collect":
            reply(worker.collect())
        elif cmd == "quit":
            break
    for conn in worker.conns:
        if conn.transport is not None:
            conn.transport.close()
    reply({"bye": True})


if __name__ == "__main__":
    try:
        import uvloop  # a lean load generator; the daemon's loop is measured separately

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(main(json.loads(sys.argv[1])))
