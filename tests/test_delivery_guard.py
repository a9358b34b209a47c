"""The NOTIFY guard: writers skip NOTIFY while the daemon drains, and no wake-up is lost.

Each writer transaction records whether it skipped its NOTIFY (it holds the
guard key shared after its first write). The daemon's reader is watched: for
every log row, the mode in which the read that first published it began. A
row whose writer skipped its NOTIFY must be found by a read of draining, or
by the read that follows the grant of the key (the last read of waiting),
never by a sleeping read: a sleeping read woken by some later NOTIFY would
mean its own wake-up was lost and only found late. A sleeping daemon reads
only when woken, so a lost wake-up at the end of a burst would never be
delivered at all.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from bridge import install, listener
from bridge.log import Event
from bridge.server import Daemon
from tests.fix_bridge import token, v1_url
from tests.resume_client import ResumeClient
from tests.timing import scaled, wait_for

pytestmark = pytest.mark.asyncio

CHANNEL = "example_task"
HOLDS_KEY = (
    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = pg_backend_pid()"
    " AND locktype = 'advisory' AND mode = 'ShareLock' AND granted"
    f" AND classid = {install.GUARD_KEY >> 32} AND objid = {install.GUARD_KEY & 0xFFFFFFFF}"
    " AND objsubid = 1)"
)
KEY_LOCKS = (
    "SELECT pid, mode, granted FROM pg_locks WHERE locktype = 'advisory'"
    f" AND classid = {install.GUARD_KEY >> 32} AND objid = {install.GUARD_KEY & 0xFFFFFFFF}"
    " AND objsubid = 1 AND mode = 'ExclusiveLock'"
)


@dataclass
class Record:
    """What the writers committed and what the daemon's reads found, keyed by row id."""

    committed: Counter[int] = field(default_factory=Counter)
    skipped: set[int] = field(default_factory=set)
    notified: set[int] = field(default_factory=set)
    rolled_back: set[int] = field(default_factory=set)


@dataclass
class Reads:
    """What one daemon's reads published: how often each row, and in which mode first."""

    daemon: Daemon
    found_in: dict[int, str] = field(default_factory=dict)
    published: Counter[int] = field(default_factory=Counter)

    def late(self, record: Record) -> list[int]:
        """Rows whose writer skipped its NOTIFY but that a sleeping read found first."""
        return sorted(r for r in record.skipped if self.found_in.get(r) == listener.SLEEPING)


def watch_reads(daemon: Daemon) -> Reads:
    """Note, for each published row, the mode in which the read that found it began."""
    reads = Reads(daemon)
    hub, lst = daemon.listener.reader.hub, daemon.listener
    publish = hub.publish

    def spy(events: list[Event]) -> Any:
        for event in events:
            if event.channel == CHANNEL and event.pks:
                row = int(event.pks[0])
                reads.published[row] += 1
                reads.found_in.setdefault(row, lst.read_mode)
        return publish(events)

    hub.publish = spy  # type: ignore[method-assign]
    return reads


async def transaction(conn: psycopg.AsyncConnection, record: Record, rng: random.Random,
                      *, hold: asyncio.Event | None = None) -> None:
    """One writer transaction: 1-3 statements, committed or (1 in 8) rolled back."""
    await conn.execute("BEGIN")
    cur = await conn.execute("INSERT INTO example_task (title) VALUES ('w') RETURNING id")
    row = await cur.fetchone()
    assert row is not None
    ids = [row[0]]
    cur = await conn.execute(HOLDS_KEY)
    skipped = bool((await cur.fetchone() or (False,))[0])
    for _ in range(rng.randrange(3)):
        if rng.random() < 0.5:
            cur = await conn.execute("INSERT INTO example_task (title) VALUES ('m') RETURNING id")
            more = await cur.fetchone()
            assert more is not None
            ids.append(more[0])
        else:
            await conn.execute("UPDATE example_task SET done = NOT done WHERE id = %s", (ids[0],))
            ids.append(ids[0])
    if hold is not None:
        await hold.wait()
    if rng.random() < 0.125:
        await conn.execute("ROLLBACK")
        record.rolled_back.update(ids)
        return
    await conn.execute("COMMIT")
    record.committed.update(ids)
    (record.skipped if skipped else record.notified).update(ids)


async def all_published(record: Record, *reads: Reads) -> None:
    """Wait until each daemon has published every committed row, once."""
    await wait_for(lambda: all(r.published == record.committed for r in reads), scaled(30),
                   what="every committed row published")


async def random_workload(url: str, record: Record, rng: random.Random, bursts: int,
                          *reads: Reads) -> None:
    """Bursts of 2-8 writers, single commits and trickles; a long transaction every 6th."""
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(9)]
    try:
        for burst in range(bursts):
            kind = rng.choice(["burst", "burst", "single", "trickle"])
            hold = asyncio.Event()
            long_task = None
            if burst % 6 == 0:  # a long transaction stays open through this whole burst
                long_task = asyncio.create_task(transaction(conns[8], record, rng, hold=hold))
            if kind == "burst":
                writers = rng.randint(2, 8)
                commits = rng.randint(30, 150)

                async def write(conn: psycopg.AsyncConnection, n: int) -> None:
                    for _ in range(n):
                        await transaction(conn, record, rng)

                await asyncio.gather(*(write(conns[i], commits) for i in range(writers)))
            elif kind == "single":
                await transaction(conns[0], record, rng)
            else:
                for _ in range(rng.randint(3, 10)):
                    await transaction(conns[rng.randrange(8)], record, rng)
                    await asyncio.sleep(rng.uniform(0, 0.02))
            hold.set()
            if long_task is not None:
                await long_task
            # A pause: nothing else will wake a daemon, so a lost wake-up shows here. It
            # lasts until no daemon drains: the next burst finds them asleep or waiting.
            await all_published(record, *reads)
            await wait_for(lambda: all(r.daemon.listener.mode != listener.DRAINING
                                       for r in reads), scaled(30), what="the daemons to rest")
    finally:
        for conn in conns:
            await conn.close()


async def test_random_bursts_lose_no_wake_up(
        start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str) -> None:
    """Random bursts, pauses, single commits, rollbacks and long transactions: every row once,
    and no row of a writer that skipped its NOTIFY is found by a sleeping read."""
    daemon = await start_daemon()
    reads = watch_reads(daemon)
    record = Record()
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    await client.start()
    try:
        await random_workload(watched_db, record, random.Random(14), 36, reads)
        await wait_for(lambda: len(client.events) == sum(record.committed.values()), scaled(30),
                       what="every committed row delivered to the client")
    finally:
        await client.stop()
    assert reads.late(record) == []
    assert client.resyncs == [] and client.errors == []
    # The guard was exercised: writers skipped NOTIFY, and the daemon changed modes often.
    assert len(record.skipped) > 100 and record.notified
    assert daemon.metrics.guard_switches.labels(mode=listener.DRAINING)._value.get() >= 5


async def test_two_daemons_both_see_rows_whose_writers_skipped_notify(
        start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str) -> None:
    """With two daemons on one guard key, each publishes every committed row once, none late."""
    first, second = await start_daemon(), await start_daemon()
    reads = [watch_reads(first), watch_reads(second)]
    record = Record()
    await random_workload(watched_db, record, random.Random(7), 18, *reads)
    assert [r.late(record) for r in reads] == [[], []]
    assert len(record.skipped) > 100


async def open_skipping_writer(url: str) -> tuple[psycopg.AsyncConnection, int]:
    """A transaction that holds the guard key shared and wrote one row: a writer that
    skipped its NOTIFY, left open (the long transaction of the issue)."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    await conn.execute("BEGIN")
    await conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (install.GUARD_KEY,))
    cur = await conn.execute("INSERT INTO example_task (title) VALUES ('long') RETURNING id")
    row = await cur.fetchone()
    assert row is not None
    cur = await conn.execute(HOLDS_KEY)
    assert await cur.fetchone() == (True,)
    return conn, int(row[0])


async def commit_one(url: str, record: Record) -> int:
    """One single-row transaction from its own connection; must never wait for the key."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await wait_for(transaction(conn, record, random.Random(0)), scaled(10),
                       what="a writer's commit while the daemon waits for the key")
    return max(record.committed)


async def key_requests(url: str) -> list[tuple[int, bool]]:
    """(pid, granted) of every exclusive hold or request of the guard key."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cur = await conn.execute(KEY_LOCKS)
        return [(pid, granted) for pid, _, granted in await cur.fetchall()]


async def test_long_writer_blocks_nobody_and_a_daemon_waiting_behind_another_misses_nothing(
        start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str) -> None:
    """While a writer holds the key shared, daemons wait for it without blocking any writer
    (who NOTIFY), and the daemon still queued after the grant reads the long writer's row."""
    long_conn, long_row = await open_skipping_writer(watched_db)
    first, second = await start_daemon(), await start_daemon()
    reads = [watch_reads(first), watch_reads(second)]
    assert [d.listener.mode for d in (first, second)] == [listener.WAITING] * 2
    assert sorted(g for _, g in await key_requests(watched_db)) == [False, False]
    record = Record()
    for _ in range(5):
        await commit_one(watched_db, record)
        await all_published(record, *reads)  # read while waiting, woken by their NOTIFYs
    assert record.notified == set(record.committed) and not record.skipped
    await long_conn.execute("COMMIT")
    await long_conn.close()
    record.committed[long_row] += 1
    record.skipped.add(long_row)
    # One daemon gets the key and reads the row; the other stays queued behind it, and
    # only the first one's tick (stamp() NOTIFYs) wakes it: no writer will.
    await all_published(record, *reads)
    assert sorted(g for _, g in await key_requests(watched_db)) == [False, True]
    assert sorted(d.listener.mode for d in (first, second)) == [listener.SLEEPING,
                                                                listener.WAITING]
    assert [r.late(record) for r in reads] == [[], []]


async def test_killed_connections_while_holding_and_waiting_for_the_key_lose_nothing(
        start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str) -> None:
    """Killing the daemon's guard connection (it holds the key) or all of its connections (it
    waits for the key) releases the key with the session; the daemon takes it again and
    every committed row is delivered once."""
    daemon = await start_daemon()
    reads = watch_reads(daemon)
    record = Record()
    client = ResumeClient(v1_url(daemon), token(1, CHANNEL), [CHANNEL])
    await client.start()
    admin = await psycopg.AsyncConnection.connect(watched_db, autocommit=True)
    try:
        for _ in range(3):  # while it sleeps, holding the key
            await wait_for(lambda: daemon.listener.mode == listener.SLEEPING, scaled(10),
                           what="the daemon to sleep holding the key")
            [(holder, granted)] = await key_requests(watched_db)
            assert granted
            await admin.execute("SELECT pg_terminate_backend(%s)", (holder,))
            # The key went with the killed session, and the daemon takes it again.
            await wait_for(lambda h=holder: _held_by_another(watched_db, h), scaled(20),
                           what="the key held again by a new session")
            await commit_one(watched_db, record)
            await all_published(record, reads)
        # The long writer's request for the key queues behind the sleeping daemon; a burst
        # makes the daemon drain (it lets go of the key) and the writer gets it.
        opening = asyncio.create_task(open_skipping_writer(watched_db))
        await wait_for(burst_until(watched_db, record, opening), scaled(60),
                       what="the daemon to drain and the long writer to get the key")
        long_conn, long_row = opening.result()
        try:
            # Writers that skipped beside the long one and committed after the daemon's
            # last read wait for the next NOTIFY (docs/guarantees.md): this one's.
            await commit_one(watched_db, record)
            await all_published(record, reads)
            for _ in range(3):  # while it waits for the key
                await wait_for(lambda: daemon.listener.mode == listener.WAITING, scaled(10),
                               what="the daemon to wait for the key")
                [(waiter, granted)] = await key_requests(watched_db)
                assert not granted
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE"
                    " application_name LIKE 'pg_notify_bridge%%' AND datname = current_database()")
                await wait_for(lambda w=waiter: _waited_by_another(watched_db, w), scaled(20),
                               what="a new session waiting for the key")
                await commit_one(watched_db, record)
                await all_published(record, reads)
            await long_conn.execute("COMMIT")
        finally:
            await long_conn.close()
        record.committed[long_row] += 1
        record.skipped.add(long_row)
        await all_published(record, reads)
        await wait_for(lambda: len(client.events) == sum(record.committed.values()), scaled(30),
                       what="every committed row delivered to the client")
    finally:
        await admin.close()
        await client.stop()
    assert client.resyncs == [] and client.errors == []
    assert reads.late(record) == []


async def burst_until(url: str, record: Record, done: asyncio.Task[Any]) -> bool:
    """Eight writers commit until `done` finishes; True then."""
    conns = [await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(8)]
    rng = random.Random(3)

    async def write(conn: psycopg.AsyncConnection) -> None:
        while not done.done():
            await transaction(conn, record, rng)

    try:
        await asyncio.gather(*(write(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    return True


async def _held_by_another(url: str, old: int) -> bool:
    return [(pid != old, granted) for pid, granted in await key_requests(url)] == [(True, True)]


async def _waited_by_another(url: str, old: int) -> bool:
    return [(pid != old, granted) for pid, granted in await key_requests(url)] == [(True, False)]


async def test_a_writer_that_skipped_beside_a_long_one_is_read_without_another_write(
        start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str) -> None:
    """Two writers skipped their NOTIFY; the short one commits while the long one stays open
    and nothing else is written: the waiting daemon still reads the short one's row."""
    long_conn, long_row = await open_skipping_writer(watched_db)
    short_conn, short_row = await open_skipping_writer(watched_db)
    daemon = await start_daemon()
    reads = watch_reads(daemon)
    try:
        assert daemon.listener.mode == listener.WAITING
        await short_conn.execute("COMMIT")  # no NOTIFY: it holds the key shared
        record = Record(committed=Counter({short_row: 1}), skipped={short_row})
        await all_published(record, reads)  # no other write will wake the daemon
        assert daemon.listener.mode == listener.WAITING  # the long writer is still open
        await long_conn.execute("COMMIT")
        record.committed[long_row] += 1
        record.skipped.add(long_row)
        await all_published(record, reads)
        await wait_for(lambda: daemon.listener.mode == listener.SLEEPING, scaled(10),
                       what="the daemon to sleep once the long writer ended")
        assert reads.late(record) == []
    finally:
        await short_conn.close()
        await long_conn.close()
