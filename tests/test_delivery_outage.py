"""Listener loss: a killed LISTEN connection and a restarted PostgreSQL lose no event.

The writer is a separate connection (not the daemon's), so what it committed
is the truth: at the end, the client must hold exactly one event for each row
in the table, in position order, with no resync needed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from bridge.server import Daemon
from tests.fix_bridge import token, v1_url
from tests.fix_db import PgServer
from tests.resume_client import ResumeClient, pos_key
from tests.timing import scaled, wait_for

pytestmark = pytest.mark.asyncio

CHANNEL = "example_task"
KILL_DAEMON = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'pg_notify_bridge%'"
)


async def http_status(port: int, path: str) -> int:
    """Status of a plain GET on the daemon (asyncio: the daemon runs in this event loop)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), scaled(10))
        return int(status_line.split()[1])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def committed_ids(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SELECT id FROM example_task ORDER BY id")
        return [r[0] for r in await cur.fetchall()]


def assert_exactly_once(daemon: Daemon, client: ResumeClient, ids: list[int]) -> None:
    """Each committed row once, nothing else, in position order, and no resync."""
    delivered = [int(e["pks"][0]) for e in client.events]
    assert client.resyncs == [] and client.errors == []
    assert sorted(delivered) == ids, (len(delivered), len(ids))
    keys = [pos_key(daemon, e["position"]) for e in client.events]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


async def test_listener_killed_during_writes_loses_nothing(
    daemon: Daemon, watched_db: str, pg_server: PgServer
) -> None:
    """pg_terminate_backend on the daemon's connections, 4 times during 200 commits: each once.

    The last time, the database refuses new connections while 50 rows commit,
    so their NOTIFYs are surely lost and nothing is written after it lets the
    daemon back in: only the catch-up on reconnect can deliver them.
    """
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    await client.start()
    dbname = conninfo_to_dict(watched_db)["dbname"]

    def allow_connections(allowed: bool) -> None:
        with pg_server.connect() as admin:  # not from the database itself: it may not
            admin.execute(sql.SQL("ALTER DATABASE {} ALLOW_CONNECTIONS {}").format(
                sql.Identifier(dbname), sql.Literal(allowed)))

    def reconnects() -> float:
        value = daemon.metrics.registry.get_sample_value("bridge_listener_reconnects_total")
        return value or 0.0

    async def kill(conn: psycopg.AsyncConnection) -> None:
        cur = await conn.execute(KILL_DAEMON)
        row = await cur.fetchone()
        assert row is not None and row[0] >= 2  # LISTEN and query connections

    async with await psycopg.AsyncConnection.connect(watched_db, autocommit=True) as conn:
        for round_ in range(1, 4):
            for i in range(50):
                await conn.execute("INSERT INTO example_task (title) VALUES (%s)", (f"{i}",))
                if i == 25:
                    await kill(conn)
            await wait_for(lambda r=round_: reconnects() >= r, what="the listener to reconnect")
        allow_connections(False)
        try:
            await kill(conn)
            for i in range(50):
                await conn.execute("INSERT INTO example_task (title) VALUES (%s)", (f"{i}",))
        finally:
            allow_connections(True)
    ids = await committed_ids(watched_db)
    assert len(ids) == 200
    await client.wait(lambda c: len(c.events) >= 200, what="all 200 events")
    await client.sync()
    assert_exactly_once(daemon, client, ids)
    assert client.connections == 1  # the daemon kept its clients through it all
    await client.stop()


async def test_postgres_restart_during_writes_loses_nothing(
    daemon: Daemon, watched_db: str, pg_server: PgServer
) -> None:
    """PostgreSQL stopped and started while a writer commits: /readyz 503, then 200, rows once."""
    if not pg_server.embedded:
        pytest.skip("stops PostgreSQL, which it may not do to the server in DATABASE_URL")
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    await client.start()
    assert await http_status(daemon.port, "/readyz") == 200
    written = 0
    stop_writing = asyncio.Event()

    async def writer() -> None:
        """Commit rows one by one; reconnect after any failure (an outcome may be unknown)."""
        nonlocal written
        while not stop_writing.is_set():
            try:
                async with await psycopg.AsyncConnection.connect(
                        watched_db, autocommit=True, connect_timeout=int(scaled(10))) as conn:
                    while not stop_writing.is_set():
                        await conn.execute("INSERT INTO example_task (title) VALUES ('w')")
                        written += 1
            except psycopg.OperationalError:
                await asyncio.sleep(0.05)  # the server is away: a writer's own retry pause

    task = asyncio.create_task(writer())
    await client.wait(lambda c: len(c.events) >= 20, what="events before the stop")
    await asyncio.to_thread(pg_server.stop)
    await wait_for(_status_is(daemon, 503), what="/readyz 503 while PostgreSQL is down")
    await wait_for(lambda: daemon.listener.backoff.attempt >= 3,
                   what="the listener to retry with backoff")
    before_restart = written
    await asyncio.to_thread(pg_server.start)
    await wait_for(_status_is(daemon, 200), timeout=30, what="/readyz 200 once caught up")
    await wait_for(lambda: written >= before_restart + 20, what="writes after the restart")
    stop_writing.set()
    await task
    ids = await committed_ids(watched_db)
    await client.wait(lambda c: len(c.events) >= len(ids), what="every committed row")
    await client.sync()
    assert_exactly_once(daemon, client, ids)
    await client.stop()


def _status_is(daemon: Daemon, status: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return await http_status(daemon.port, "/readyz") == status

    return check
