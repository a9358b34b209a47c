"""bridge/fanout.py against a real websockets server: the internals it relies on still hold.

fanout.py writes pre-serialized frames straight to each connection's
transport and reads websockets' protocol state, extensions and handshake
objects. These tests fail if a websockets release moves any of them, which
is why setup.cfg pins websockets below its next major version.
"""

from __future__ import annotations

import asyncio
import configparser
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.protocol import State

from bridge.fanout import Fanout, Link, forget_handshake
from bridge.metrics import Metrics
from bridge.session import V1, Session

REPO = Path(__file__).resolve().parent.parent


class Echo:
    """A server that hands each connection to the test and keeps it open."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()


@pytest.fixture
async def server() -> AsyncIterator[tuple[Echo, int, int]]:
    echo = Echo()
    async with serve(echo.handler, "127.0.0.1", 0, compression=None) as plain, \
            serve(echo.handler, "127.0.0.1", 0, compression="deflate") as deflate:
        yield (echo, plain.sockets[0].getsockname()[1], deflate.sockets[0].getsockname()[1])


def fake_session(ws: ServerConnection) -> Session[Link]:
    """A Session whose rules fanout never reads: only peer, closing and too_slow matter here."""
    return Session(Link(ws), V1, "127.0.0.1", None, rules=None)  # type: ignore[arg-type]


async def test_websockets_internals_fanout_reads_are_where_it_expects(
        server: tuple[Echo, int, int]) -> None:
    """transport, protocol.state/extensions and the handshake request/response are all there."""
    echo, port, _ = server
    async with connect(f"ws://127.0.0.1:{port}/", compression=None,
                       additional_headers={"Cookie": "bridge_token=secret"}):
        ws = await asyncio.wait_for(echo.connections.get(), 10)
        assert ws.transport.get_write_buffer_size() == 0
        assert ws.protocol.state is State.OPEN
        assert ws.protocol.extensions == []
        assert ws.request is not None and ws.request.headers["Cookie"] == "bridge_token=secret"
        assert ws.response is not None and ws.response.headers["Upgrade"] == "websocket"
        forget_handshake(ws)
        assert "Cookie" not in ws.request.headers
        assert not list(ws.response.headers.raw_items()) and ws.response.body == b""


async def test_one_serialized_frame_reaches_plain_and_compressed_clients(
        server: tuple[Echo, int, int]) -> None:
    """The bytes fanout writes on a transport are a text frame a client reads; deflate too."""
    echo, port, deflate_port = server
    metrics = Metrics()
    fanout = Fanout(metrics, max_client_buffer=1 << 20)
    async with connect(f"ws://127.0.0.1:{port}/", compression=None) as plain_client, \
            connect(f"ws://127.0.0.1:{deflate_port}/") as deflate_client:
        first = await asyncio.wait_for(echo.connections.get(), 10)
        second = await asyncio.wait_for(echo.connections.get(), 10)
        sessions = [fake_session(first), fake_session(second)]
        assert sum(bool(s.peer.ws.protocol.extensions) for s in sessions) == 1
        fanout.write(b'{"type":"event"}', sessions)
        for client in (plain_client, deflate_client):
            assert await asyncio.wait_for(client.recv(), 10) == '{"type":"event"}'
        assert metrics.registry.get_sample_value(
            "bridge_frames_sent_total", {"endpoint": V1}) == 2


def test_websockets_is_pinned_below_its_next_major_version() -> None:
    """setup.cfg bounds websockets above by the next major of the version these tests ran on."""
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    requirement = next(line for line in cfg["options"]["install_requires"].split("\n")
                       if line.strip().startswith("websockets"))
    major = int(websockets.__version__.split(".")[0])
    assert f"<{major + 1}" in requirement.replace(" ", ""), requirement
