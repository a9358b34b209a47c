"""Resume without gaps: out-of-order commits, open transactions, another daemon, bad positions.

Real PostgreSQL, real daemons, real sockets. Writers that keep a transaction
open use async connections, so the in-process daemon keeps running.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import psycopg
import pytest

from bridge.server import Daemon
from tests.fix_bridge import caught_up, execute, token, v1_url
from tests.resume_client import ResumeClient, pos_key
from tests.timing import wait_for

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
OpenTx = Callable[[], Awaitable[psycopg.AsyncConnection]]
CHANNEL = "example_task"


async def insert(conn: psycopg.AsyncConnection, title: str, owner: int | None = None) -> int:
    """Insert one row in conn's transaction; its id."""
    cur = await conn.execute(
        "INSERT INTO example_task (title, owner_id) VALUES (%s, %s) RETURNING id", (title, owner)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def insert_now(url: str, title: str) -> int:
    """Insert one row in its own committed transaction; its id."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO example_task (title) VALUES (%s) RETURNING id", (title,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def pks(client: ResumeClient) -> list[int]:
    return [int(e["pks"][0]) for e in client.events]


@pytest.fixture
async def tx(watched_db: str) -> AsyncIterator[OpenTx]:
    """Factory of connections in a transaction (not autocommit), closed after the test."""
    conns: list[psycopg.AsyncConnection] = []

    async def open_tx() -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(watched_db)
        conns.append(conn)
        return conn

    yield open_tx
    for conn in conns:
        await conn.close()


async def subscriber(daemon: Daemon) -> ResumeClient:
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    await client.start()
    return client


@pytest.mark.parametrize("memory_events", [10000, 0], ids=["from-memory", "from-log"])
async def test_out_of_order_commit_is_delivered_on_resume(
    start_daemon: StartDaemon, watched_db: str, tx: OpenTx, memory_events: int,
) -> None:
    """T1 writes first and commits last: a client that left after T2's event gets T1's on resume."""
    daemon = await start_daemon(memory_events=memory_events)
    client = await subscriber(daemon)
    t1, t2 = await tx(), await tx()
    row1 = await insert(t1, "t1")
    row2 = await insert(t2, "t2")
    await t2.commit()
    await client.wait(lambda c: len(c.events) == 1, what="T2's event")
    assert pks(client) == [row2]
    await client.stop()
    await t1.commit()
    execute(watched_db, "SELECT 1")  # nothing to deliver: the resume must not depend on it
    await client.start()
    await client.wait(lambda c: len(c.events) == 2, what="T1's event on resume")
    assert pks(client) == [row2, row1]
    first, second = (pos_key(daemon, e["position"]) for e in client.events)
    assert second > first  # T1 committed later, so its position is later...
    assert second[1] < first[1]  # ...although its log row was taken first
    assert client.resyncs == [] and client.errors == []
    await client.stop()


async def test_resume_from_the_empty_logs_position_reads_the_log(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """Subscribed to an empty log (position (0, 0)), back on a daemon without memory: exact."""
    a = await start_daemon()
    b = await start_daemon(memory_events=0)
    client = await subscriber(a)
    assert pos_key(a, client.positions[CHANNEL]) == (0, 0)
    await client.stop()
    rows = [insert_now(watched_db, f"missed {i}") for i in range(2)]
    await caught_up(b, watched_db)
    client.url = v1_url(b)
    await client.start()
    await client.wait(lambda c: len(c.events) == 2, what="the missed events")
    assert pks(client) == rows and client.resyncs == []
    await client.stop()


async def test_open_transactions_hold_back_nobody(
    daemon: Daemon, watched_db: str, tx: OpenTx
) -> None:
    """Open transactions on the watched table and on another table delay only their own events."""
    execute(watched_db, "CREATE TABLE unwatched (id serial PRIMARY KEY, note text)")
    client = await subscriber(daemon)
    on_watched, on_other = await tx(), await tx()
    held = await insert(on_watched, "held")
    await on_other.execute("INSERT INTO unwatched (note) VALUES ('open')")
    flowing = [insert_now(watched_db, f"live {i}") for i in range(3)]
    await client.wait(lambda c: len(c.events) == 3, what="the live events")
    assert pks(client) == flowing
    await on_other.commit()
    await on_watched.commit()
    marker = insert_now(watched_db, "marker")
    await client.wait(lambda c: len(c.events) == 5, what="the held event, then the marker")
    assert pks(client) == [*flowing, held, marker]
    keys = [pos_key(daemon, e["position"]) for e in client.events]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    await client.stop()


async def test_resume_on_another_daemon(start_daemon: StartDaemon, watched_db: str) -> None:
    """Events from daemon A, resume on B (from its log): no gap, no duplicate, same positions."""
    a = await start_daemon()
    b = await start_daemon(memory_events=0)
    watcher = await subscriber(b)
    client = await subscriber(a)
    before = [insert_now(watched_db, f"before {i}") for i in range(3)]
    await client.wait(lambda c: len(c.events) == 3, what="three events from A")
    await client.stop()
    missed = [insert_now(watched_db, f"missed {i}") for i in range(3)]
    await watcher.wait(lambda c: len(c.events) == 6, what="B to see all six")
    client.url = v1_url(b)
    await client.start()
    after = insert_now(watched_db, "after")
    await client.wait(lambda c: len(c.events) == 7, what="the missed events and a live one")
    await watcher.wait(lambda c: len(c.events) == 7, what="B's own subscriber")
    assert pks(client) == [*before, *missed, after]
    assert [e["position"] for e in client.events] == [e["position"] for e in watcher.events]
    assert client.resyncs == []
    await client.stop()
    await watcher.stop()


async def test_resume_from_a_position_the_daemon_has_not_read_yet(
    daemon: Daemon, watched_db: str
) -> None:
    """A position given out elsewhere, ahead of this daemon's cursor: it catches up, then serves."""
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    with psycopg.connect(watched_db, autocommit=True) as other:
        # Play the other daemon: hold the stamp lock, so this one cannot stamp or read,
        # and stamp a new row ourselves (the lock is re-entrant for its holder).
        other.execute("SELECT pg_advisory_lock(hashtext('pg_notify_bridge.stamp'))")
        seen = insert_now(watched_db, "seen elsewhere")
        other.execute("SELECT bridge.stamp()")
        row = other.execute("SELECT tick, id FROM bridge.log WHERE channel = %s"
                            " ORDER BY id DESC LIMIT 1", (CHANNEL,)).fetchone()
        assert row is not None
        client.positions[CHANNEL] = daemon.hub.position((row[0], row[1]))
        assert daemon.hub.cursor < (row[0], row[1])
        resuming = asyncio.create_task(client.start())
        await wait_for(lambda: daemon.replay.cursor_waiters,
                       what="the daemon to wait for its cursor")
        assert not resuming.done()
        other.execute("SELECT pg_advisory_unlock(hashtext('pg_notify_bridge.stamp'))")
    await resuming
    later = insert_now(watched_db, "live")
    await client.wait(lambda c: len(c.events) == 1, what="the live event")
    assert pks(client) == [later]  # not `seen`: the position already covered it
    assert seen != later and client.resyncs == []
    await client.stop()


@pytest.mark.parametrize(
    "since",
    ["not a position", "", "ffffffff-1-1", "0123456-1-1", "{db}-x-1", "{db}-1", "{db}-1-1-1",
     "{db}-0-0", "A" * 40, "A" * 39 + "=", "A" * 41],
)
async def test_a_bad_position_gets_a_resync(daemon: Daemon, watched_db: str, since: str) -> None:
    """A malformed, forged or foreign position (the old readable form too): a resync, then live."""
    since = since.format(db=daemon.hub.db_id)
    assert since != "ffffffff-1-1" or daemon.hub.db_id != "ffffffff"
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    client.positions[CHANNEL] = since
    await client.start()
    await client.wait(lambda c: len(c.resyncs) == 1, what="the resync")
    resync = client.resyncs[0]
    assert resync["reason"] == "unknown position"
    assert daemon.hub.parse(resync["position"]) is not None
    row = insert_now(watched_db, "live")
    await client.wait(lambda c: len(c.events) == 1, what="the next live event")
    assert pks(client) == [row]
    assert [f["type"] for f in client.frames] == ["resync", "event"]
    await client.stop()


async def test_a_pruned_position_gets_a_resync(start_daemon: StartDaemon, watched_db: str) -> None:
    """With --retention 1s, a position whose tick was pruned gets a resync, not silence."""
    daemon = await start_daemon(retention=1.0)
    client = await subscriber(daemon)
    insert_now(watched_db, "old")
    await client.wait(lambda c: len(c.events) == 1, what="the first event")
    await client.stop()
    old = pos_key(daemon, client.positions[CHANNEL])

    def older_than_retention() -> bool:
        with psycopg.connect(watched_db, autocommit=True) as conn:
            row = conn.execute("SELECT clock_timestamp() - stamped_at > interval '1.2 s'"
                               " FROM bridge.tick WHERE tick = %s", (old[0],)).fetchone()
        return bool(row and row[0])

    await wait_for(older_than_retention, what="the first tick to pass the retention")
    missed = insert_now(watched_db, "wakes the reader, which prunes")
    await wait_for(lambda: not daemon.hub.remembers(old), what="the daemon to prune and forget")
    with psycopg.connect(watched_db, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM bridge.log WHERE tick <= %s", (old[0],)).fetchone()
    assert row == (0,)
    await client.start()
    await client.wait(lambda c: len(c.resyncs) == 1, what="the resync")
    assert client.resyncs[0]["reason"] == "position expired"
    assert pos_key(daemon, client.resyncs[0]["position"]) >= old
    live = insert_now(watched_db, "live")
    await client.wait(lambda c: pks(c)[-1:] == [live], what="the next live event")
    assert missed not in pks(client)  # it is covered by the resync's refetch, not replayed
    await client.stop()
