"""Daemon fixtures: a watched table, real daemons on port 0, real WebSocket clients.

Fixtures:
    watched_db (function)      db_url with table example_task (id, title, done,
                               owner_id) and its triggers, channel column owner_id
    start_daemon (function)    async factory: start_daemon(**config) -> Daemon,
                               in this process, bound to 127.0.0.1:0, stopped after
    daemon (function)          one daemon with default settings (no anonymous channel)
Helpers:
    token(user, *channels, key=SECRET)   a token as Django would mint it
    WsClient.connect(url, **kw)          a client with recv_json / expect helpers
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import psycopg
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bridge import install
from bridge.auth import Verifier
from bridge.config import Config
from bridge.server import Daemon
from tests.timing import scaled, wait_for

SECRET = secrets.token_urlsafe(50)  # per run: no key in the repository signs anything
TABLE_DDL = (
    "CREATE TABLE example_task (id serial PRIMARY KEY, title text NOT NULL DEFAULT '',"
    " done boolean NOT NULL DEFAULT false, owner_id integer)"
)


def token(user: Any, *chans: str, key: str = SECRET, ttl: float | None = None) -> str:
    """A token exactly as `django.core.signing.dumps(..., salt=SALT)` makes it."""
    return Verifier(key).make(user, chans, ttl)


def execute(url: str, query: str, params: Any = None) -> None:
    """Run one statement in its own committed transaction."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(query, params)


@pytest.fixture
def watched_db(db_url: str) -> str:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(TABLE_DDL)
        install.install(conn, "public.example_task", channel_column="owner_id")
    return db_url


@pytest.fixture
async def start_daemon(watched_db: str) -> AsyncIterator[Callable[..., Awaitable[Daemon]]]:
    daemons: list[Daemon] = []

    async def start(**overrides: Any) -> Daemon:
        settings: dict[str, Any] = {"database_url": watched_db, "port": 0, "host": "127.0.0.1",
                                    "secret_key": SECRET, "ping_interval": 0}
        settings.update(overrides)
        daemon = Daemon(Config(**settings))
        await daemon.start()
        daemons.append(daemon)
        await wait_for(daemon.listener.ready.wait(), what="the listener to be ready")
        return daemon

    yield start
    for daemon in daemons:
        await daemon.stop()


@pytest.fixture
async def daemon(start_daemon: Callable[..., Awaitable[Daemon]]) -> Daemon:
    return await start_daemon()


class WsClient:
    """A real WebSocket client with helpers that wait on frames, never on the clock."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws

    @classmethod
    async def connect(cls, url: str, **kwargs: Any) -> WsClient:
        return cls(await connect(url, open_timeout=scaled(10), **kwargs))

    async def send_json(self, obj: Any) -> None:
        await self.ws.send(json.dumps(obj))

    async def recv(self, timeout: float = 10) -> str | bytes:
        return await asyncio.wait_for(self.ws.recv(), scaled(timeout))

    async def recv_json(self, timeout: float = 10) -> dict[str, Any]:
        data = await self.recv(timeout)
        return json.loads(data)

    async def expect(self, type_: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The next frame, which must have this type and these fields."""
        frame = await self.recv_json(timeout)
        assert frame["type"] == type_, frame
        for key, value in fields.items():
            assert frame.get(key) == value, (key, frame)
        return frame

    async def subscribe(self, channel: str, since: str | None = None) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            message["since"] = since
        await self.send_json(message)
        return await self.expect("subscribed", channel=channel)

    async def auth(self, tok: str) -> dict[str, Any]:
        await self.send_json({"type": "auth", "token": tok})
        return await self.expect("authenticated")

    async def sync(self) -> None:
        """Ping and wait for the pong: every frame sent before it has been read."""
        await self.send_json({"type": "ping"})
        while True:
            frame = await self.recv_json()
            if frame["type"] == "pong":
                return
            raise AssertionError(f"unexpected frame before pong: {frame}")

    async def close(self) -> None:
        await self.ws.close()

    async def closed_with(self, timeout: float = 10) -> int | None:
        """Wait for the server to close the connection; its close code."""
        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), scaled(timeout))
        except (ConnectionClosed, asyncio.TimeoutError):  # either ends the wait
            pass
        await asyncio.wait_for(self.ws.wait_closed(), scaled(timeout))
        return self.ws.close_code


def v1_url(daemon: Daemon) -> str:
    return f"ws://127.0.0.1:{daemon.port}/v1"


def legacy_url(daemon: Daemon) -> str:
    return f"ws://127.0.0.1:{daemon.port}/"


async def caught_up(daemon: Daemon, url: str) -> None:
    """Wait until the daemon has read every committed change (its cursor is the log's head)."""

    def check() -> bool:
        with psycopg.connect(url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT (SELECT count(*) FROM bridge.log WHERE tick IS NULL),"
                " (SELECT ARRAY[tick, id] FROM bridge.log WHERE tick IS NOT NULL"
                "  ORDER BY tick DESC, id DESC LIMIT 1)"
            ).fetchone()
        assert row is not None
        unstamped, head = row
        return unstamped == 0 and (head is None or tuple(head) == daemon.hub.cursor)

    await wait_for(check, what="the daemon to read every committed change")


async def raw_http(port: int, request: str) -> bytes:
    """Send raw bytes and read until the server closes: for requests no client library sends
    (its own Host, broken upgrades, odd request targets)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request.encode("latin-1"))
    try:
        return await asyncio.wait_for(reader.read(), scaled(10))
    finally:
        writer.close()
