"""A database that went back in time (a restore, a lagging failover) is a resync, not a gap."""

from __future__ import annotations

import psycopg
import pytest

from bridge.server import Daemon
from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url
from tests.timing import wait_for

pytestmark = pytest.mark.asyncio

KILL_DAEMON = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
    " WHERE datname = current_database() AND application_name LIKE 'pg_notify_bridge%'"
)


async def test_ticks_going_back_retire_every_position(daemon: Daemon, watched_db: str) -> None:
    """After ticks go back, live clients resync, old positions resync, new changes arrive."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    frames = []
    for title in ("a", "b", "c"):  # one at a time, so each has a tick of its own
        execute(watched_db, "INSERT INTO example_task (title) VALUES (%s)", (title,))
        frames.append(await client.expect("event", op="INSERT"))
    await caught_up(daemon, watched_db)
    old_db_id = daemon.hub.db_id
    first = daemon.hub.parse(frames[0]["position"])
    assert first is not None
    first_tick = first[0]
    # What a restore to just after the first change looks like from the log's side.
    with psycopg.connect(watched_db, autocommit=True) as conn:
        conn.execute("DELETE FROM bridge.log WHERE tick > %s", (first_tick,))
        conn.execute("DELETE FROM bridge.tick WHERE tick > %s", (first_tick,))
        conn.execute("SELECT setval('bridge.tick_seq', %s)", (first_tick,))
        conn.execute(KILL_DAEMON)
    resync = await client.expect("resync", channel="example_task", reason="database replaced")
    assert daemon.hub.parse(resync["position"], old_db_id) is None
    assert daemon.hub.parse(resync["position"]) is not None
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('after the restore')")
    event = await client.expect("event", op="INSERT")
    assert daemon.hub.db_id != old_db_id
    assert daemon.hub.parse(event["position"]) is not None
    assert daemon.hub.parse(event["position"], old_db_id) is None
    late = await WsClient.connect(v1_url(daemon))
    await late.auth(token(1, "example_task"))
    await late.subscribe("example_task", since=frames[1]["position"])
    await late.expect("resync", reason="unknown position")
    await wait_for(lambda: daemon.listener.ready.is_set(), what="the listener to be ready")
    await client.close()
    await late.close()
