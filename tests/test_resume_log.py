"""Resumes served from the log (not from memory) survive a lost database connection."""

from __future__ import annotations

import psycopg
import pytest

from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url

pytestmark = pytest.mark.asyncio


async def test_resume_from_log_reconnects_a_dead_replay_connection(
    start_daemon, watched_db: str
) -> None:
    """The kept replay connection was killed: the next resume reconnects and replays anyway."""
    daemon = await start_daemon(memory_events=0)  # every resume goes to the log
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    start = (await client.subscribe("example_task"))["position"]
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('one')")
    await client.expect("event", op="INSERT")
    await caught_up(daemon, watched_db)
    first = await WsClient.connect(v1_url(daemon))
    await first.auth(token(1, "example_task"))
    await first.subscribe("example_task", since=start)
    await first.expect("event", op="INSERT")  # replayed from the log: the connection exists
    assert daemon.replay.conn is not None
    pid = daemon.replay.conn.info.backend_pid
    with psycopg.connect(watched_db, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
    second = await WsClient.connect(v1_url(daemon))
    await second.auth(token(1, "example_task"))
    await second.subscribe("example_task", since=start)
    frame = await second.expect("event", op="INSERT")
    assert frame["position"] != start
    for c in (client, first, second):
        await c.close()
