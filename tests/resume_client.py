"""A /v1 client that resumes each channel from its last position after any disconnect.

This is what a well-behaved browser client does (bridge.js), reduced to what
the delivery tests need: every event and resync it received, in arrival
order, and the position it would resume from. Losing the connection is
normal for it (a killed daemon, a 1011, a test calling drop()): it
reconnects, to `url` (a test may point it at another daemon), and asks for
what it missed.

    client = ResumeClient(v1_url(daemon), token(1, "example_task"), ["example_task"])
    await client.start()          # connected and subscribed
    ...
    await client.drop()           # lose the connection; it resumes by itself
    await client.wait(lambda c: len(c.events) >= 3, what="three events")
    await client.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.timing import scaled, wait_for

if TYPE_CHECKING:
    from bridge.server import Daemon

__all__ = ["ResumeClient", "pos_key"]


def pos_key(daemon: Daemon, position: str) -> tuple[int, int]:
    """The (tick, id) a position stands for, decoded with the daemon's keys.

    Tests order events by it; the client itself only stores positions and
    sends them back, since to a client they are opaque (bridge/positions.py).
    """
    pos = daemon.hub.parse(position)
    assert pos is not None, f"not a position of this daemon's database: {position!r}"
    return pos


class ResumeClient:
    """Subscribes `channels` on `url` and keeps them subscribed across disconnects."""

    def __init__(self, url: str, tok: str, channels: Sequence[str]) -> None:
        self.url = url
        self.token = tok
        self.channels = list(channels)
        #: Where each channel resumes from: the last event, resync or subscribed frame.
        self.positions: dict[str, str] = {}
        #: Every event and resync frame, in the order they arrived.
        self.frames: list[dict[str, Any]] = []
        #: Error frames (a test usually asserts there are none).
        self.errors: list[dict[str, Any]] = []
        #: Connections made so far (1 after start()).
        self.connections = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._live = asyncio.Event()
        self._pending: set[str] = set()
        self._pong: asyncio.Future[None] | None = None

    @property
    def events(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "event"]

    @property
    def resyncs(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "resync"]

    async def start(self) -> None:
        """Connect (again, after stop(): resuming) and wait until every channel is subscribed."""
        self._live.clear()
        self._task = asyncio.create_task(self._run(), name="resume-client")
        await self.live()

    async def live(self) -> None:
        """Wait until the current connection has every channel subscribed (replay under way)."""
        await wait_for(self._live.wait(), what="the client to be subscribed again")

    async def drop(self, url: str | None = None) -> None:
        """Lose the connection now (frames in flight are lost); resume on `url` if given."""
        if url is not None:
            self.url = url
        self._live.clear()
        ws = self._ws
        if ws is not None:
            ws.transport.abort()  # no close handshake: whatever was in flight is gone

    async def sync(self) -> None:
        """Ping and wait for the pong: every frame the server sent before it has been read."""
        await self.live()
        assert self._ws is not None
        self._pong = asyncio.get_running_loop().create_future()
        await self._ws.send(json.dumps({"type": "ping"}))
        await wait_for(self._pong, what="the pong")

    async def wait(self, condition: Callable[[ResumeClient], Any], timeout: float = 20,
                   *, what: str) -> Any:
        """Wait until condition(self) holds (the frames arrive in the background)."""
        return await wait_for(lambda: self._check(condition), timeout, what=what)

    async def stop(self) -> None:
        """Go offline (close the connection, stop reconnecting); start() resumes."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    def _check(self, condition: Callable[[ResumeClient], Any]) -> Any:
        if self._task is not None and self._task.done():
            self._task.result()  # a crash in the client surfaces in the test
        return condition(self)

    async def _run(self) -> None:
        pause = 0.0
        while True:
            try:
                async with connect(self.url, open_timeout=scaled(10)) as ws:
                    self._ws = ws
                    self.connections += 1
                    pause = 0.0
                    await self._subscribe_all(ws)
                    async for data in ws:
                        self._on_frame(json.loads(data))
            except (ConnectionClosed, InvalidHandshake, OSError, asyncio.TimeoutError):
                pass  # reconnect: that is this client's whole point
            self._ws = None
            self._live.clear()
            await asyncio.sleep(pause)  # back off only while the daemon refuses us
            pause = min(max(pause * 2, 0.05), 1.0)

    async def _subscribe_all(self, ws: ClientConnection) -> None:
        self._pending = set(self.channels)
        await ws.send(json.dumps({"type": "auth", "token": self.token}))
        for channel in self.channels:
            message: dict[str, Any] = {"type": "subscribe", "channel": channel}
            if channel in self.positions:
                message["since"] = self.positions[channel]
            await ws.send(json.dumps(message))

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame["type"]
        if kind in ("event", "resync"):
            self.frames.append(frame)
            self.positions[frame["channel"]] = frame["position"]
        elif kind == "subscribed":
            self.positions[frame["channel"]] = frame["position"]
            self._pending.discard(frame["channel"])
            if not self._pending:
                self._live.set()
        elif kind == "pong" and self._pong is not None and not self._pong.done():
            self._pong.set_result(None)
        elif kind == "error":
            self.errors.append(frame)
