"""Property: under any interleaving of writers and client drops, delivered == committed, each once.

Hypothesis draws a schedule: three connections insert, update, commit and
roll back in any order, and a client drops its connection at any point, or
goes away for a few steps, and resumes on one of two daemons (one answers
from memory, one only from the log); "settle" lets the client receive all
that committed so far, so that it also resumes from an event's position.
Each statement is identified by the log row it wrote (currval of the log's
id), so the check is exact: the client gets one event for each
statement of each committed transaction, none of a rolled-back one, in
position order, and every row's changes in the order they committed.

The daemons, the database and the connections live for the whole test;
each example writes rows of its own owner, and so has a channel of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bridge.server import Daemon
from tests.fix_bridge import caught_up, token, v1_url
from tests.resume_client import ResumeClient, pos_key

pytestmark = pytest.mark.asyncio

WRITERS = 3
LAST_LOG_ID = "SELECT currval(pg_get_serial_sequence('bridge.log', 'id'))"

Step = tuple[str, int, int]
steps = st.lists(
    st.one_of(
        st.tuples(st.just("insert"), st.integers(0, WRITERS - 1), st.just(0)),
        st.tuples(st.just("update"), st.integers(0, WRITERS - 1), st.integers(0, 7)),
        st.tuples(st.just("commit"), st.integers(0, WRITERS - 1), st.just(0)),
        st.tuples(st.just("rollback"), st.integers(0, WRITERS - 1), st.just(0)),
        st.tuples(st.just("drop"), st.integers(0, 1), st.just(0)),
        st.tuples(st.just("leave"), st.just(0), st.just(0)),
        st.tuples(st.just("back"), st.integers(0, 1), st.integers(0, 1)),
        st.tuples(st.just("settle"), st.just(0), st.just(0)),
    ),
    min_size=1,
    max_size=30,
)


@dataclass
class Setup:
    url: str
    daemons: list[Daemon]
    writers: list[psycopg.AsyncConnection]
    owners: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))


@pytest.fixture
async def setup(
    start_daemon: Callable[..., Awaitable[Daemon]], watched_db: str
) -> AsyncIterator[Setup]:
    daemons = [await start_daemon(), await start_daemon(memory_events=0)]
    writers = [await psycopg.AsyncConnection.connect(watched_db) for _ in range(WRITERS)]
    yield Setup(watched_db, daemons, writers)
    for conn in writers:
        await conn.close()


@dataclass
class Model:
    """What the database must now hold, tracked alongside the real writers."""

    committed_rows: list[int] = field(default_factory=list)
    open: dict[int, list[tuple[int, int]]] = field(default_factory=dict)  # (log id, row)
    inserted: dict[int, list[int]] = field(default_factory=dict)
    locks: dict[int, int] = field(default_factory=dict)  # row -> writer holding it
    committed: list[tuple[int, int]] = field(default_factory=list)  # in commit order

    def end(self, writer: int, commit: bool) -> None:
        if commit:
            self.committed.extend(self.open.get(writer, []))
            self.committed_rows.extend(self.inserted.get(writer, []))
        self.open.pop(writer, None)
        self.inserted.pop(writer, None)
        self.locks = {row: w for row, w in self.locks.items() if w != writer}


async def fetch_int(conn: psycopg.AsyncConnection, query: str, params: tuple[object, ...] = ()
                    ) -> int:
    cur = await conn.execute(query, params)  # type: ignore[arg-type]
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


def received(daemon: Daemon, client: ResumeClient) -> set[int]:
    """Log ids of the events the client got."""
    return {pos_key(daemon, e["position"])[1] for e in client.events}


async def run(setup: Setup, schedule: list[Step]) -> None:
    owner = next(setup.owners)
    channel = f"example_task:owner_id={owner}"
    client = ResumeClient(v1_url(setup.daemons[0]), token(1, "example_task"), [channel])
    await client.start()
    model = Model()
    online = True
    try:
        for kind, who, k in schedule:
            if kind == "drop":  # lose the connection, resume at once
                if online:
                    await client.drop(v1_url(setup.daemons[who]))
                continue
            if kind == "leave":  # go away for a few steps
                if online:
                    await client.stop()
                    online = False
                continue
            if kind == "settle":  # an idle moment: the client gets what was committed so far
                if online:
                    expected = {log_id for log_id, _ in model.committed}
                    await client.wait(lambda c, e=expected: e <= received(setup.daemons[0], c),
                                      what="settling")
                continue
            if kind == "back":  # resume, after the daemon read what was missed when k == 1
                if not online:
                    if k:
                        await caught_up(setup.daemons[who], setup.url)
                    client.url = v1_url(setup.daemons[who])
                    await client.start()
                    online = True
                continue
            conn = setup.writers[who]
            if kind in ("commit", "rollback"):
                await (conn.commit() if kind == "commit" else conn.rollback())
                model.end(who, kind == "commit")
                continue
            mine = model.inserted.get(who, [])
            free = [r for r in model.committed_rows + mine if model.locks.get(r, who) == who]
            if kind == "update" and free:
                row = free[k % len(free)]
                await conn.execute("UPDATE example_task SET title = title || '+' WHERE id = %s",
                                   (row,))
            else:  # an insert, or an update with no row it could take without waiting
                row = await fetch_int(conn, "INSERT INTO example_task (title, owner_id)"
                                      " VALUES ('p', %s) RETURNING id", (owner,))
                model.inserted.setdefault(who, []).append(row)
            log_id = await fetch_int(conn, LAST_LOG_ID)  # the row channel's log row
            model.open.setdefault(who, []).append((log_id, row))
            model.locks[row] = who
        for who, conn in enumerate(setup.writers):
            await conn.commit()
            model.end(who, True)
        conn = setup.writers[0]
        marker = await fetch_int(conn, "INSERT INTO example_task (title, owner_id)"
                                 " VALUES ('marker', %s) RETURNING id", (owner,))
        marker_log = await fetch_int(conn, LAST_LOG_ID)
        await conn.commit()
        model.committed.append((marker_log, marker))
        if not online:
            await client.start()
        await client.wait(lambda c: marker_log in received(setup.daemons[0], c),
                          what="the marker")
        await client.sync()
    finally:
        for conn in setup.writers:
            await conn.rollback()
        await client.stop()

    assert client.resyncs == [] and client.errors == []
    delivered = [pos_key(setup.daemons[0], e["position"]) for e in client.events]
    assert delivered == sorted(delivered) and len(set(delivered)) == len(delivered)
    delivered_ids = [log_id for _, log_id in delivered]
    assert sorted(delivered_ids) == sorted(log_id for log_id, _ in model.committed)
    row_of = dict(model.committed)
    for row in {r for _, r in model.committed}:
        in_commit_order = [log_id for log_id, r in model.committed if r == row]
        as_delivered = [log_id for log_id in delivered_ids if row_of[log_id] == row]
        assert as_delivered == in_commit_order, row


@settings(max_examples=150, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(schedule=steps)
# Pinned schedules: each path a random run may or may not reach.
@example(schedule=[  # resume from an event's position, from memory (daemon 0) ...
    ("insert", 0, 0), ("commit", 0, 0), ("settle", 0, 0), ("leave", 0, 0),
    ("insert", 1, 0), ("commit", 1, 0), ("back", 0, 1)])
@example(schedule=[  # ... and from the log (daemon 1)
    ("insert", 0, 0), ("commit", 0, 0), ("settle", 0, 0), ("leave", 0, 0),
    ("insert", 1, 0), ("commit", 1, 0), ("back", 1, 1)])
@example(schedule=[  # out-of-order commit across a drop to the other daemon
    ("insert", 0, 0), ("insert", 1, 0), ("commit", 1, 0), ("settle", 0, 0), ("drop", 1, 0),
    ("commit", 0, 0)])
@example(schedule=[  # one row changed by three transactions, a rolled back one between
    ("insert", 0, 0), ("commit", 0, 0), ("update", 1, 0), ("update", 2, 0), ("commit", 1, 0),
    ("update", 2, 0), ("rollback", 2, 0), ("leave", 0, 0), ("update", 0, 0), ("update", 0, 0),
    ("commit", 0, 0), ("back", 1, 0)])
async def test_delivered_equals_committed_under_any_interleaving(
    setup: Setup, schedule: list[Step]
) -> None:
    """Any schedule of writes, commits, rollbacks and client drops: each committed change once."""
    await run(setup, schedule)
