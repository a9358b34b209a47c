"""Positions against a live daemon: opaque to clients, unforgeable, shared by a secret.

The threat: a position used to be `<db_id>-<tick>-<id>`, with the id of the
global log row, so a client with a grant for one row learnt how many writes
every other table got by subscribing twice and subtracting.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from bridge.positions import Positions
from bridge.server import Daemon
from tests.fix_bridge import SECRET, WsClient, caught_up, execute, token, v1_url

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
ROW = "example_task:owner_id=7"
OLD = "the-old-secret-key-before-rotation-0123456789abcdef"


def log_positions(url: str) -> list[tuple[int, int]]:
    """Every stamped (tick, id) in the log."""
    with psycopg.connect(url, autocommit=True) as conn:
        return [(t, i) for t, i in conn.execute(
            "SELECT tick, id FROM bridge.log WHERE tick IS NOT NULL ORDER BY tick, id")]


async def resubscribe(client: WsClient, channel: str) -> str:
    """Subscribe afresh (no `since`): the position the daemon gives is its head."""
    await client.send_json({"type": "unsubscribe", "channel": channel})
    return str((await client.subscribe(channel))["position"])


async def test_a_row_grant_cannot_count_other_writes(daemon: Daemon, watched_db: str) -> None:
    """Subscribing twice around 25 writes it may not see gives two opaque strings, no count."""
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, ROW))
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('mine', 7)")
    await caught_up(daemon, watched_db)
    first = str((await client.subscribe(ROW))["position"])
    for _ in range(25):
        execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('not mine', 8)")
    await caught_up(daemon, watched_db)
    second = await resubscribe(client, ROW)
    for position in (first, second):
        assert re.fullmatch(r"[A-Za-z0-9_-]{40}", position), position
        for tick, id_ in log_positions(watched_db):
            assert f"{tick}-{id_}" not in position
        assert daemon.hub.db_id not in position
    # What the strings stand for, which only a holder of the secret can read:
    before, after = daemon.hub.parse(first), daemon.hub.parse(second)
    assert before is not None and after is not None and after[1] - before[1] == 50
    await client.close()


async def test_a_position_made_with_another_secret_gets_a_resync(
    daemon: Daemon, watched_db: str
) -> None:
    """A well-formed position forged without the secret (the log's start) is a resync, no replay."""
    for title in ("a", "b"):
        execute(watched_db, "INSERT INTO example_task (title) VALUES (%s)", (title,))
    await caught_up(daemon, watched_db)
    forged = Positions(["an-attackers-guess-at-the-secret-0123456789"]).encode(
        daemon.hub.db_id, (0, 0))
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    await client.send_json({"type": "subscribe", "channel": "example_task", "since": forged})
    await client.expect("subscribed", channel="example_task")
    await client.expect("resync", channel="example_task", reason="unknown position")
    await client.sync()  # and nothing replayed after it
    await client.close()


async def test_rotation_resumes_old_positions_on_a_daemon_with_the_fallback(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """A position from a daemon with the old key resumes on one that has it as a fallback."""
    old = await start_daemon(secret_key=OLD)
    rotated = await start_daemon(secret_key=SECRET, secret_key_fallbacks=(OLD,))
    strict = await start_daemon(secret_key=SECRET)
    client = await WsClient.connect(v1_url(old))
    await client.auth(token(1, "example_task", key=OLD))
    since = str((await client.subscribe("example_task"))["position"])
    await client.close()
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('missed')")
    for daemon in (rotated, strict):
        await caught_up(daemon, watched_db)

    client = await WsClient.connect(v1_url(rotated))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task", since=since)
    missed = await client.expect("event", channel="example_task", op="INSERT")
    assert rotated.hub.parse(missed["position"]) == strict.hub.parse(missed["position"])
    await client.sync()
    await client.close()

    client = await WsClient.connect(v1_url(strict))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task", since=since)
    await client.expect("resync", channel="example_task", reason="unknown position")
    await client.close()
