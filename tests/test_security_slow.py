"""A client that stops reading: it never delays the others, costs bounded memory, loses nothing."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge.server import Client, Daemon
from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url
from tests.timing import scaled

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
LIMIT = 64 * 1024  # a small fraction of what the changes below send a client
CHANGES = 3000  # ~150 bytes each: about 450 KB for a client that reads none of it


async def _stalled_client(daemon: Daemon) -> tuple[ClientConnection, Client, str]:
    """A subscriber with a 4 KB receive buffer that, after `subscribed`, reads nothing.

    Its client library stops reading once one message waits (max_queue=1), the
    kernel's receive window fills, and the daemon's writes back up: what a phone
    in a tunnel looks like. Returns the client, the daemon's side, and the position.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", daemon.port))
    ws = await connect(v1_url(daemon), sock=sock, max_queue=1, open_timeout=scaled(10))
    await ws.send(json.dumps({"type": "auth", "token": token(1, "example_task")}))
    assert json.loads(await ws.recv())["type"] == "authenticated"
    await ws.send(json.dumps({"type": "subscribe", "channel": "example_task"}))
    subscribed = json.loads(await ws.recv())
    assert subscribed["type"] == "subscribed"
    port = sock.getsockname()[1]
    server_side = next(c for c in daemon.clients
                       if c.peer.ws.remote_address and c.peer.ws.remote_address[1] == port)
    # Loopback lets the kernel queue megabytes per socket; a congested path does not.
    # A small send buffer makes the daemon's own (user-space) buffer the one that fills.
    server_side.peer.ws.transport.get_extra_info("socket").setsockopt(
        socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    return ws, server_side, subscribed["position"]


async def _drain(ws: ClientConnection) -> list[dict[str, Any]]:
    """Everything the daemon had sent before it closed or dropped the connection."""
    frames = []
    try:
        while True:
            frames.append(json.loads(await asyncio.wait_for(ws.recv(), scaled(10))))
    except ConnectionClosed:
        pass
    return frames


def _pks(frames: list[dict[str, Any]]) -> list[int]:
    return [int(pk) for f in frames if f["type"] == "event" for pk in f["pks"]]


async def test_slow_consumer_is_cut_off_and_resumes_without_loss(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """3000 changes: a well-behaved client gets all of them while a stalled one reads none;
    the stalled one is closed with 4008 (or dropped) holding at most --max-client-buffer,
    and resuming from its last position gives it every change exactly once."""
    daemon = await start_daemon(max_client_buffer=LIMIT)
    slow, server_side, start = await _stalled_client(daemon)
    good = await WsClient.connect(v1_url(daemon))
    await good.auth(token(2, "example_task"))
    await good.subscribe("example_task")
    execute(watched_db, f"DO $$ BEGIN FOR i IN 1..{CHANGES} LOOP"
                        " INSERT INTO example_task (title, owner_id) VALUES ('t', i % 5);"
                        " END LOOP; END $$")
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('marker')")

    # The stalled client has not read a byte, and the other one gets everything in order.
    seen = [await good.expect("event", channel="example_task") for _ in range(CHANGES + 1)]
    assert _pks(seen) == list(range(1, CHANGES + 2))
    await caught_up(daemon, watched_db)

    # The daemon stopped queueing for the stalled client at the limit and is closing it.
    closes = daemon.metrics.registry.get_sample_value("bridge_slow_consumer_closes_total")
    assert closes == 1
    assert server_side.closing
    assert daemon.hub.subscribers("example_task") == 1  # the good client only
    transport = server_side.peer.ws.transport
    assert transport.get_write_buffer_size() <= LIMIT + 1024  # one frame and a close past it

    # It wakes up: reads what reached it, sees 4008 (or a drop), resumes from its position.
    before = await _drain(slow)
    assert slow.close_code in (4008, 1006, None), slow.close_code
    assert 0 < len(before) < CHANGES
    events = [f for f in before if f["type"] == "event"]
    since = events[-1]["position"] if events else start
    again = await WsClient.connect(v1_url(daemon))
    await again.auth(token(1, "example_task"))
    await again.subscribe("example_task", since=since)
    after = [await again.expect("event", channel="example_task")
             for _ in range(CHANGES + 1 - len(events))]
    assert _pks(events) + _pks(after) == list(range(1, CHANGES + 2))  # no gap, no duplicate
    await again.sync()
    await again.close()
    await good.close()
