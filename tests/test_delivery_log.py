"""The log under the daemon: stamps in commit order, pruning seen by the reader, indexed reads.

Real PostgreSQL, no socket: SQL functions from sql/schema.sql, and the
Reader driven directly on one connection while other connections write,
stamp and prune as other daemons would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from bridge import log
from bridge.hub import Batch, Hub
from bridge.metrics import Metrics
from bridge.reader import Reader
from tests.fix_bridge import execute
from tests.timing import wait_for

CHANNEL = "example_task"


@pytest.fixture
async def aconn(watched_db: str) -> AsyncIterator[psycopg.AsyncConnection]:
    async with await psycopg.AsyncConnection.connect(watched_db, autocommit=True) as conn:
        yield conn


def log_rows(url: str) -> dict[int, int | None]:
    """Log id -> tick, for the table channel."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT id, tick FROM bridge.log WHERE channel = %s", (CHANNEL,))
        return dict(rows.fetchall())


async def insert(conn: psycopg.AsyncConnection) -> int:
    """Insert a row in conn's transaction; the id of the log row it wrote."""
    await conn.execute("INSERT INTO example_task (title) VALUES ('x')")
    cur = await conn.execute("SELECT currval(pg_get_serial_sequence('bridge.log', 'id'))")
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


# -- stamps --------------------------------------------------------------------


async def test_a_later_commit_gets_a_later_tick_whatever_its_id(watched_db: str) -> None:
    """T1 takes the smaller id but commits last: its position comes after T2's."""
    async with await psycopg.AsyncConnection.connect(watched_db) as t1, \
            await psycopg.AsyncConnection.connect(watched_db) as t2:
        id1, id2 = await insert(t1), await insert(t2)
        await t2.commit()
        execute(watched_db, "SELECT bridge.stamp()")
        assert log_rows(watched_db) == {id2: 1}  # T1's row is not visible, so not stamped
        await t1.commit()
    execute(watched_db, "SELECT bridge.stamp()")
    ticks = log_rows(watched_db)
    assert id1 < id2 and (ticks[id2], id2) < (ticks[id1], id1)


async def test_stamps_are_cut_one_at_a_time(watched_db: str) -> None:
    """A second daemon's stamp waits on the first one's lock, then cuts the next tick."""
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('first')")
    async with await psycopg.AsyncConnection.connect(watched_db) as first, \
            await psycopg.AsyncConnection.connect(watched_db, autocommit=True) as second:
        cur = await first.execute("SELECT bridge.stamp(), pg_backend_pid()")
        row = await cur.fetchone()
        assert row is not None and row[0] is not None
        first_tick = row[0]
        execute(watched_db, "INSERT INTO example_task (title) VALUES ('second')")
        cur = await second.execute("SELECT pg_backend_pid()")
        pid = (await cur.fetchone() or [0])[0]
        waiting = asyncio.create_task(second.execute("SELECT bridge.stamp()"))

        def blocked() -> bool:
            with psycopg.connect(watched_db, autocommit=True) as conn:
                row = conn.execute("SELECT wait_event FROM pg_stat_activity WHERE pid = %s",
                                   (pid,)).fetchone()
            return row == ("advisory",)

        await wait_for(blocked, what="the second stamp to wait on the advisory lock")
        assert not waiting.done()
        await first.commit()
        second_tick = (await (await waiting).fetchone() or [None])[0]
    assert second_tick is not None and second_tick > first_tick
    assert sorted(set(log_rows(watched_db).values())) == [first_tick, second_tick]


# -- the reader and pruning ----------------------------------------------------


def reader_for(retention: float) -> tuple[Reader, list[Batch[str]]]:
    """A Reader whose hub has one subscriber, "client", on the table channel."""
    hub: Hub[str] = Hub("", 100)
    hub.subscribe("client", CHANNEL)
    batches: list[Batch[str]] = []
    reader = Reader(hub, batches.append, Metrics(), retention=retention, replay_limit=1000,
                    memory_events=100)
    return reader, batches


def frames(batches: list[Batch[str]]) -> list[dict[str, Any]]:
    return [json.loads(d.frame) for b in batches for d in b.deliveries]


def other_daemon_prunes_everything(url: str) -> None:
    """Another daemon, with a retention of 0, stamps and prunes all there is."""
    execute(url, "SELECT bridge.stamp()")
    execute(url, "SELECT bridge.prune('0 s')")


async def test_reader_back_from_a_disconnect_resyncs_when_unread_ticks_were_pruned(
    watched_db: str, aconn: psycopg.AsyncConnection
) -> None:
    """Pruned before this daemon read them (it was away): its subscribers get a resync."""
    reader, batches = reader_for(retention=3600)
    await reader.start(aconn)
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('missed')")
    other_daemon_prunes_everything(watched_db)
    await reader.start(aconn)  # a reconnect
    await reader.catch_up(aconn)
    assert [(f["type"], f["reason"]) for f in frames(batches)] == [
        ("resync", "log pruned before it was read")]


async def test_quiet_reader_checks_the_prune_mark(
    watched_db: str, aconn: psycopg.AsyncConnection
) -> None:
    """A reader that has not read for half its retention checks for pruned ticks after reading."""
    reader, batches = reader_for(retention=0.001)
    await reader.start(aconn)
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('missed')")
    other_daemon_prunes_everything(watched_db)
    await reader.catch_up(aconn)
    assert [f["type"] for f in frames(batches)] == ["resync"]


async def test_pruning_what_the_reader_already_read_is_no_gap(
    watched_db: str, aconn: psycopg.AsyncConnection
) -> None:
    """The reader's own newest tick pruned (an idle log): the next event comes, no resync."""
    reader, batches = reader_for(retention=0.001)
    await reader.start(aconn)
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('read')")
    await reader.catch_up(aconn)
    execute(watched_db, "SELECT bridge.prune('0 s')")
    assert log_rows(watched_db) == {}
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('next')")
    await reader.catch_up(aconn)
    assert [f["type"] for f in frames(batches)] == ["event", "event"]


def test_expired_positions() -> None:
    """A position in or before the pruned ticks has expired; the empty log's heads have not."""
    assert not log.expired((0, 0), 0)
    assert not log.expired((5, 0), 5)  # the head of a log pruned empty through tick 5
    assert log.expired((5, 9), 5)  # inside tick 5: its later rows are gone
    assert log.expired((4, 9), 5)
    assert not log.expired((6, 1), 5)


# -- indexed reads -------------------------------------------------------------


async def plan(conn: psycopg.AsyncConnection, query: str, params: dict[str, Any]) -> str:
    cur = await conn.execute("EXPLAIN (FORMAT JSON) " + query, params)  # type: ignore[operator]
    row = await cur.fetchone()
    assert row is not None
    return json.dumps(row[0])


async def test_resume_reads_are_served_by_their_indexes(aconn: psycopg.AsyncConnection) -> None:
    """On a 100,000-row log: read_after uses log_position, a row channel log_channel, no seq scan.

    docs/guarantees.md has EXPLAIN ANALYZE of the same queries on 1,000,000 rows.
    """
    await aconn.execute(
        "INSERT INTO bridge.log (tick, channel, tbl, op, pks, count)"
        " SELECT g / 10 + 1, CASE WHEN g % 2 = 0 THEN 'example_task'"
        " ELSE 'example_task:owner_id=' || (g / 2) % 1000 END,"
        " 'public.example_task', 'UPDATE', jsonb_build_array((g / 2)::text), 1"
        " FROM generate_series(0, 99999) g"
    )
    await aconn.execute("INSERT INTO bridge.log (tick, channel, tbl, op, pks, count)"
                        " VALUES (10001, 'example_task', 'public.example_task', 'TRUNCATE',"
                        " NULL, 0)")
    await aconn.execute("ANALYZE bridge.log")
    recent = {"after_tick": 9900, "after_id": 0, "limit": 1001}
    after = await plan(aconn, log.READ_AFTER, recent)
    assert '"Index Name": "log_position"' in after and "Seq Scan" not in after
    in_range = {**recent, "after_tick": 0, "upto_tick": 10002, "upto_id": 0,
                "channel": "example_task:owner_id=7", "base": "example_task"}
    row_channel = await plan(aconn, log.READ_ROW_CHANNEL, in_range)
    assert '"Index Name": "log_channel"' in row_channel
    assert '"Index Name": "log_truncate"' in row_channel
    assert "Seq Scan" not in row_channel
    rows = await (await aconn.execute(log.READ_ROW_CHANNEL, in_range)).fetchall()
    assert len(rows) == 51 and rows[-1][4] == "TRUNCATE"  # 50 of owner 7, then the TRUNCATE
