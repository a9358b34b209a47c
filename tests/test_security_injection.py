"""Input that reaches SQL: table, channel and column names, channel values, positions."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable

import psycopg
import pytest

from bridge import install
from bridge.errors import InstallError
from bridge.server import Daemon
from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url
from tests.timing import scaled

StartDaemon = Callable[..., Awaitable[Daemon]]
HOSTILE_TABLE = "Robert'); DROP TABLE example_task;--"
HOSTILE_COLUMN = 'owner"; DROP TABLE example_task;--'


def _intact(url: str) -> None:
    """example_task and the bridge log are still there, and only example_task is watched."""
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.example_task') IS NOT NULL,"
                            " to_regclass('bridge.log') IS NOT NULL").fetchone() == (True, True)
        watched = conn.execute("SELECT tbl FROM bridge.watched ORDER BY tbl").fetchall()
    assert watched == [("public.example_task",)]


@pytest.mark.parametrize(
    "table",
    [
        "example_task; DROP TABLE example_task",
        "example_task'; DROP TABLE example_task; --",
        '"example_task"; DROP TABLE example_task',
        "example_task) ; DROP TABLE example_task; --",
        "a.b.c.d",
        "x\x00y",
        "example_task\n",
        "",
        "x" * 1000,
        "pg_catalog.pg_authid",
    ],
)
def test_install_refuses_hostile_table_names(watched_db: str, table: str) -> None:
    """A table name is a bound parameter of to_regclass, never SQL text: each is refused."""
    with psycopg.connect(watched_db, autocommit=True) as conn, pytest.raises(InstallError):
        install.install(conn, table)
    _intact(watched_db)


@pytest.mark.parametrize(
    ("channel", "column"),
    [
        ("tasks'; DROP TABLE example_task; --", None),
        ("Tasks", None),
        ("tasks\n", None),
        ("tasks:owner_id=1", None),
        ("t" * 190, "owner_id"),
        (None, "owner_id; DROP TABLE example_task"),
        (None, 'owner_id"'),
        (None, "owner_id\n"),
        (None, "no_such_column"),
    ],
)
def test_install_refuses_hostile_channels_and_columns(
    watched_db: str, channel: str | None, column: str | None
) -> None:
    """--channel and --channel-column must match the channel grammar and the table."""
    with psycopg.connect(watched_db, autocommit=True) as conn, pytest.raises(InstallError):
        install.install(conn, "example_task", channel=channel, channel_column=column)
    _intact(watched_db)


def test_hostile_identifiers_are_quoted_not_run(watched_db: str) -> None:
    """A table really named `Robert'); DROP TABLE ...` is watched safely under a plain channel."""
    with psycopg.connect(watched_db, autocommit=True) as conn:
        conn.execute(f'CREATE TABLE "{HOSTILE_TABLE}" (id int PRIMARY KEY,'
                     f' "{HOSTILE_COLUMN.replace(chr(34), chr(34) * 2)}" int)')
        quoted = '"' + HOSTILE_TABLE + '"'
        with pytest.raises(InstallError, match="not a valid channel name"):
            install.install(conn, quoted)  # its name is no channel name ...
        with pytest.raises(InstallError, match="channel column"):
            install.install(conn, quoted, channel="robert", channel_column=HOSTILE_COLUMN)
        assert install.install(conn, quoted, channel="robert") == "robert"  # ... this is
        conn.execute(f'INSERT INTO "{HOSTILE_TABLE}" (id) VALUES (1)')
        conn.execute("SELECT bridge.stamp()")
        rows = conn.execute("SELECT channel, tbl, op, pks FROM bridge.log").fetchall()
    assert rows == [("robert", f"public.{HOSTILE_TABLE}", "INSERT", ["1"])]
    with psycopg.connect(watched_db, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('public.example_task') IS NOT NULL"
                            ).fetchone() == (True,)


def test_hostile_column_values_never_become_channels(watched_db: str) -> None:
    """Row channels take only values matching the grammar; the table channel still fires."""
    values = ["ok-1", "A.b_c-9", "x'; DROP TABLE example_task; --", "x" * 65, "a b", "",
              "caf\u00e9", "line\nbreak"]
    with psycopg.connect(watched_db, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, tag text)")
        install.install(conn, "notes", channel_column="tag")
        for value in values:
            conn.execute("INSERT INTO notes (tag) VALUES (%s)", (value,))
        conn.execute("SELECT bridge.stamp()")
        channels = conn.execute("SELECT channel, count(*) FROM bridge.log WHERE tbl ="
                                " 'public.notes' GROUP BY channel ORDER BY channel").fetchall()
    assert channels == [("notes", len(values)), ("notes:tag=A.b_c-9", 1), ("notes:tag=ok-1", 1)]


def test_cli_refuses_a_bad_table_without_a_traceback(watched_db: str) -> None:
    """`python -m bridge install-triggers 'a.b.c.d'` exits 2 with one line, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "install-triggers", "a.b.c.d; DROP TABLE example_task",
         "--database-url", watched_db],
        capture_output=True, text=True, timeout=scaled(60))
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    _intact(watched_db)


@pytest.mark.asyncio
async def test_client_channel_names_and_positions_never_reach_sql(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """Injection strings as channels get bad_channel; as positions, a resync; the log lives."""
    daemon = await start_daemon(memory_events=0, max_bad_messages=100)  # resumes read the log
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    for channel in ("example_task'; DROP TABLE bridge.log; --",
                    "example_task:owner_id=1' OR '1'='1", "example_task:owner_id=1;--",
                    'example_task" UNION SELECT 1'):
        for kind in ("subscribe", "unsubscribe"):
            await client.send_json({"type": kind, "channel": channel})
            await client.expect("error", code="bad_channel")
    await client.send_json({"type": "subscribe", "channel": "example_task",
                            "since": "'; DROP TABLE bridge.log; --"})
    await client.expect("subscribed", channel="example_task")
    await client.expect("resync", channel="example_task", reason="unknown position")
    await client.send_json({"type": "unsubscribe", "channel": "example_task"})
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('tick 1')")
    await caught_up(daemon, watched_db)
    tick = daemon.hub.cursor[0]
    for _ in range(2):
        execute(watched_db, "INSERT INTO example_task (title) VALUES ('a later tick')")
    await caught_up(daemon, watched_db)
    assert daemon.hub.cursor[0] > tick
    # An id past bigint (only a holder of the secret can make such a position): a bound
    # parameter, compared as a number by PostgreSQL, never pasted into SQL.
    await client.send_json({"type": "subscribe", "channel": "example_task",
                            "since": daemon.hub.position((tick, 9999999999999999999))})
    await client.expect("subscribed", channel="example_task")
    for pk in ("2", "3"):
        await client.expect("event", channel="example_task", pks=[pk])
    await client.sync()
    await client.close()
    _intact(watched_db)
