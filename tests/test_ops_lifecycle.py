"""Daemons as real processes: rolling restarts lose nothing, drains end in time, logs are safe."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import socket
from collections.abc import AsyncIterator

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from tests.django_site import free_port
from tests.fix_bridge import SECRET, WsClient, token
from tests.ops_support import BridgeProcess, Follower, Writer
from tests.timing import scaled, wait_for


@pytest.fixture
async def processes() -> AsyncIterator[list[BridgeProcess]]:
    """Daemons a test starts; whatever is left is killed afterwards."""
    started: list[BridgeProcess] = []
    yield started
    for daemon in started:
        daemon.stop()


async def test_rolling_restart_of_two_daemons_loses_no_event(
    watched_db: str, processes: list[BridgeProcess]
) -> None:
    """SIGTERM one daemon, start it again, then the other: a resuming client misses nothing."""
    ports = [free_port(), free_port()]

    def spawn(port: int) -> BridgeProcess:
        daemon = BridgeProcess(watched_db, "--drain-seconds", "5s", port=port).start()
        processes.append(daemon)
        return daemon

    first, second = spawn(ports[0]), spawn(ports[1])
    await asyncio.gather(first.ready(), second.ready())
    follower = Follower([first.url, second.url]).start()
    writer = Writer(watched_db)
    try:
        await wait_for(follower.connected.wait(), 30, what="the follower to subscribe")
        writer.start()
        for n, old in enumerate((first, second), start=1):
            await wait_for(lambda n=n: len(follower.events) >= 20 * n, 30,  # type: ignore[misc]
                           what="events flowing")
            old.signal(signal.SIGTERM)
            assert await old.exited() == 0, old.logs()
            await wait_for(lambda n=n: follower.connections > n, 30,  # type: ignore[misc]
                           what="the follower to resume on the other daemon")
            await spawn(old.port).ready()
        await wait_for(lambda: len(follower.events) >= 60, 30, what="events after the restarts")
        ids = await writer.stop()
        received = await follower.received(ids)
    finally:
        await writer.stop()
        await follower.stop()
    assert follower.close_codes == [1001, 1001]
    assert follower.resyncs == []
    assert received == ids, "every committed row once, in commit order"
    for old in (first, second):
        logs = old.logs()
        assert "SIGTERM: stopped accepting, closing 1 clients with 1001" in logs, logs
        assert logs.rstrip().endswith("stopped"), logs


async def test_sigint_drain_ends_within_drain_seconds(
    watched_db: str, processes: list[BridgeProcess]
) -> None:
    """SIGINT drains like SIGTERM; a client that never answers the close is cut at the deadline."""
    daemon = BridgeProcess(watched_db, "--drain-seconds", "500ms").start()
    processes.append(daemon)
    await daemon.ready()
    polite = await WsClient.connect(daemon.url)
    mute = socket.create_connection(("127.0.0.1", daemon.port), timeout=scaled(10))
    key = base64.b64encode(os.urandom(16)).decode()
    mute.sendall(f"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    assert mute.recv(4096).startswith(b"HTTP/1.1 101")
    try:
        daemon.signal(signal.SIGINT)
        assert await polite.closed_with() == 1001
        assert await daemon.exited() == 0
    finally:
        mute.close()
    logs = daemon.logs()
    assert "SIGINT: stopped accepting, closing 2 clients with 1001" in logs, logs
    assert "1 clients did not close within --drain-seconds 0.5: cutting them" in logs, logs


async def test_json_logs_one_object_per_line_and_no_secrets(
    watched_db: str, processes: list[BridgeProcess]
) -> None:
    """--log-format json writes parseable lines; keys, tokens and passwords never appear."""
    password = "db-password-never-logged"
    url = make_conninfo(watched_db, password=password)
    assert conninfo_to_dict(url)["password"] == password
    daemon = BridgeProcess(url, "--log-format", "json", "--log-level", "DEBUG").start()
    processes.append(daemon)
    await daemon.ready()
    good, forged = token(1, "example_task"), token(1, "example_task", key="k" * 50)
    client = await WsClient.connect(daemon.url)
    await client.auth(good)
    await client.close()
    refused = await WsClient.connect(daemon.url)
    await refused.send_json({"type": "auth", "token": forged})
    assert await refused.closed_with() == 4001
    daemon.signal(signal.SIGTERM)
    assert await daemon.exited() == 0
    lines = daemon.logs().splitlines()
    entries = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= e.keys() for e in entries)
    messages = "\n".join(e["message"] for e in entries)
    for expected in ("serving ws://", "listener connected and caught up",
                     "refused a token from 127.0.0.1: bad token signature", "SIGTERM", "stopped"):
        assert expected in messages, (expected, messages)
    text = "\n".join(lines)
    for secret in (SECRET, good, forged, password):
        assert secret not in text
