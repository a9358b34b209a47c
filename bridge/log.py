"""The event log: positions, stamping, and reads since a position.

A position is (tick, id): the tick that stamped a committed log row, then the
row's id. Ticks are cut in commit order under an advisory lock (see
sql/schema.sql), so every daemon sharing the database agrees on them and a
client can resume on any instance. Clients never see (tick, id): they get
an opaque, authenticated encoding of it that also names the database it came
from (`db_id`), so a position from another database is detected rather than
misread (bridge/positions.py).

Only queries live here; deciding what to send is the hub's job.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

from .errors import NoSchemaError
from .install import HAS_SCHEMA

Pos = tuple[int, int]
ORIGIN: Pos = (0, 0)


def describe(db_id: str, pos: Pos) -> str:
    """`<db_id>-<tick>-<id>`: a log position for operators (status, logs), never for clients."""
    return f"{db_id}-{pos[0]}-{pos[1]}"


@dataclass(slots=True)
class Event:
    """One committed log row: a statement's change on one channel."""

    pos: Pos
    channel: str
    table: str
    op: str
    pks: list[Any] | None
    count: int
    frame: bytes = field(default=b"", repr=False)

    @property
    def base(self) -> str:
        return self.channel.partition(":")[0]


_COLUMNS = "tick, id, channel, tbl, op, pks, count"
_RANGE = "tick IS NOT NULL AND (tick, id) > (%(after_tick)s, %(after_id)s)"

READ_AFTER = (
    f"SELECT {_COLUMNS} FROM bridge.log WHERE {_RANGE} ORDER BY tick, id LIMIT %(limit)s"
)
"""Rows after a position: an index scan of log_position (tick, id) that stops at the limit."""

COUNT_AFTER = f"SELECT count(*) FROM (SELECT 1 FROM bridge.log WHERE {_RANGE} LIMIT %(limit)s) s"
"""How far behind a reconnecting daemon is, up to a limit: an index-only scan of log_position."""

_CHANNEL_ROWS = (
    f"SELECT {_COLUMNS} FROM bridge.log WHERE channel = %(channel)s AND {_RANGE}"
    " AND (tick, id) <= (%(upto_tick)s, %(upto_id)s)"
)
READ_CHANNEL = f"{_CHANNEL_ROWS} ORDER BY tick, id LIMIT %(limit)s"
"""A table channel's rows in a range: log_channel (channel, tick, id), or log_position when
the channel is most of the log."""

READ_ROW_CHANNEL = (
    f"{_CHANNEL_ROWS} UNION ALL"
    f" SELECT {_COLUMNS} FROM bridge.log WHERE channel = %(base)s AND op = 'TRUNCATE' AND {_RANGE}"
    " AND (tick, id) <= (%(upto_tick)s, %(upto_id)s)"
    " ORDER BY tick, id LIMIT %(limit)s"
)
"""A row channel's rows plus its table's TRUNCATEs: log_channel, and the tiny log_truncate
(a plain OR would read every row of the table channel to find the TRUNCATEs)."""


def _event(row: tuple[Any, ...]) -> Event:
    return Event((row[0], row[1]), row[2], row[3], row[4], row[5], row[6])


async def meta(conn: psycopg.AsyncConnection) -> dict[str, str]:
    """The bridge schema's metadata (db_id, schema_version, pruned_through)."""
    cur = await conn.execute(HAS_SCHEMA)
    row = await cur.fetchone()
    if not row or not row[0]:
        raise NoSchemaError()
    cur = await conn.execute("SELECT key, value FROM bridge.meta")
    return {k: v for k, v in await cur.fetchall()}


async def watched(conn: psycopg.AsyncConnection) -> dict[str, str | None]:
    """Channel of each watched table -> its channel column (None without one)."""
    cur = await conn.execute("SELECT channel, channel_column FROM bridge.watched")
    return {ch: col for ch, col in await cur.fetchall()}


STAMP_ROWS = 10000  # bridge.stamp() cuts at most this many rows into one tick


async def stamp(conn: psycopg.AsyncConnection) -> int | None:
    """Cut a tick over every committed, unstamped row; returns it, or None if none was cut."""
    cur = await conn.execute("SELECT bridge.stamp()")
    row = await cur.fetchone()
    return row[0] if row else None


async def head(conn: psycopg.AsyncConnection) -> Pos:
    """The position of the newest stamped row (or of the last prune when the log is empty)."""
    cur = await conn.execute(
        "SELECT tick, id FROM bridge.log WHERE tick IS NOT NULL ORDER BY tick DESC, id DESC LIMIT 1"
    )
    row = await cur.fetchone()
    if row:
        return (row[0], row[1])
    return (await pruned_through(conn), 0)


async def pruned_through(conn: psycopg.AsyncConnection) -> int:
    cur = await conn.execute("SELECT value::bigint FROM bridge.meta WHERE key = 'pruned_through'")
    row = await cur.fetchone()
    return int(row[0]) if row else 0


def expired(pos: Pos, pruned_through: int) -> bool:
    """Whether rows after `pos` may have been pruned, so a resume from it cannot be proven.

    Pruning deletes whole ticks up to pruned_through. A position in an earlier
    tick, or inside the last pruned one (whose later rows are gone), has
    expired. (pruned_through, 0) has not: it is the head a daemon gives out
    when the log is empty, so nothing after it was deleted ((0, 0) likewise).
    """
    return pos[0] < pruned_through or (pos[0] == pruned_through and pos[1] > 0)


async def advance(conn: psycopg.AsyncConnection, after: Pos, limit: int) -> list[Event]:
    """stamp(), then read_after(): one round trip for the reader's usual wake-up."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bridge.advance(%s, %s, %s)", (after[0], after[1], limit)
    )
    return [_event(r) for r in await cur.fetchall()]


async def read_after(conn: psycopg.AsyncConnection, after: Pos, limit: int) -> list[Event]:
    """Stamped rows after a position, in position order (index log_position)."""
    cur = await conn.execute(
        READ_AFTER, {"after_tick": after[0], "after_id": after[1], "limit": limit}
    )
    return [_event(r) for r in await cur.fetchall()]


async def count_after(conn: psycopg.AsyncConnection, after: Pos, limit: int) -> int:
    """How many stamped rows follow a position, counting no further than `limit`."""
    cur = await conn.execute(
        COUNT_AFTER, {"after_tick": after[0], "after_id": after[1], "limit": limit}
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def read_last(conn: psycopg.AsyncConnection, limit: int) -> list[Event]:
    """The newest `limit` stamped rows, oldest first (to warm the hub's memory at start)."""
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM bridge.log WHERE tick IS NOT NULL"
        " ORDER BY tick DESC, id DESC LIMIT %s",
        (limit,),
    )
    return [_event(r) for r in reversed(await cur.fetchall())]


async def read_channel(
    conn: psycopg.AsyncConnection, channel: str, after: Pos, upto: Pos, limit: int
) -> list[Event]:
    """One channel's rows in (after, upto], plus its table's TRUNCATEs for a row channel.

    Served by the indexes log_channel (channel, tick, id) and log_truncate: the
    cost is the rows of that channel in the range, not the size of the log
    (docs/guarantees.md has the numbers for a log of 1,000,000 rows).
    """
    base = channel.partition(":")[0]
    params = {"channel": channel, "base": base, "after_tick": after[0], "after_id": after[1],
              "upto_tick": upto[0], "upto_id": upto[1], "limit": limit}
    cur = await conn.execute(READ_CHANNEL if base == channel else READ_ROW_CHANNEL, params)
    return [_event(r) for r in await cur.fetchall()]


async def prune(conn: psycopg.AsyncConnection, retention: float) -> int:
    """Delete ticks older than `retention` seconds (one daemon at a time); rows deleted."""
    cur = await conn.execute("SELECT bridge.prune(make_interval(secs => %s))", (retention,))
    row = await cur.fetchone()
    return int(row[0]) if row and row[0] else 0


async def stats(conn: psycopg.AsyncConnection) -> tuple[Any, ...]:
    """Size and extent of the log for metrics: bytes, estimated rows, unstamped rows, oldest
    (tick, id), its age in seconds, pruned_through. Cheap: sizes and indexes, no full scan."""
    cur = await conn.execute(
        "SELECT pg_total_relation_size('bridge.log'),"
        " greatest((SELECT reltuples FROM pg_class WHERE oid = 'bridge.log'::regclass), 0),"
        " (SELECT count(*) FROM bridge.log WHERE tick IS NULL),"
        " o.tick, o.id,"
        " extract(epoch FROM clock_timestamp() - (SELECT stamped_at FROM bridge.tick t"
        "   WHERE t.tick = o.tick)),"
        " (SELECT value::bigint FROM bridge.meta WHERE key = 'pruned_through')"
        " FROM (SELECT 1) one LEFT JOIN LATERAL (SELECT tick, id FROM bridge.log"
        "   WHERE tick IS NOT NULL ORDER BY tick, id LIMIT 1) o ON true"
    )
    row = await cur.fetchone()
    assert row is not None
    return tuple(row)


async def last_tick(conn: psycopg.AsyncConnection) -> int:
    """The highest tick number ever handed out (0 if none): ticks never go back, unless the
    database itself did (a restore, a failover to a standby that lagged)."""
    cur = await conn.execute("SELECT last_value, is_called FROM bridge.tick_seq")
    row = await cur.fetchone()
    if row is None:
        return 0
    return int(row[0]) if row[1] else int(row[0]) - 1


async def rotate_db_id(conn: psycopg.AsyncConnection, old: str) -> str:
    """Give the database a new db_id (once, whichever daemon gets there first) and return it.

    Positions carry the db_id, so every position handed out before is then
    'unknown' on every daemon: clients resync instead of resuming into ticks
    that were handed out again.
    """
    await conn.execute(
        "UPDATE bridge.meta SET value = substr(md5(random()::text || clock_timestamp()::text),"
        " 1, 8) WHERE key = 'db_id' AND value = %s",
        (old,),
    )
    cur = await conn.execute("SELECT value FROM bridge.meta WHERE key = 'db_id'")
    row = await cur.fetchone()
    assert row is not None
    return str(row[0])
