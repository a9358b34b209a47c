"""The database fixtures and ``example.devdb`` do what the other tests rely on."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from example import devdb
from tests.fix_db import PgServer, temporary_database
from tests.timing import wait_for

REPO = Path(__file__).resolve().parent.parent

_seen_databases: set[str] = set()


def _dbname(url: str) -> str:
    return str(conninfo_to_dict(url)["dbname"])


def test_db_url_is_a_fresh_reachable_database(db_url: str) -> None:
    """db_url names a database that exists, is the one connected to, and is empty."""
    with psycopg.connect(db_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', "
            "'information_schema')"
        ).fetchone()
    assert name == (_dbname(db_url),)
    assert tables == (0,)


@pytest.mark.parametrize("run", [1, 2])
def test_each_test_gets_its_own_database(db_url: str, run: int) -> None:
    """Two tests never share a database: names differ and nothing carries over."""
    name = _dbname(db_url)
    assert name not in _seen_databases
    _seen_databases.add(name)
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE marker (id int)")  # fails if a previous test's is here


def test_temporary_database_is_dropped_even_with_clients(pg_server: PgServer) -> None:
    """The database is dropped on exit although a client is still connected to it."""
    with temporary_database(pg_server, "drop me") as url:
        lingering = psycopg.connect(url)
    with pg_server.connect() as conn:
        left = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = %s", (_dbname(url),)
        ).fetchone()
    lingering.close()
    assert left == (0,)


def test_db_tcp_url_reaches_the_same_database(db_url: str, db_tcp_url: str) -> None:
    """The TCP URL and the socket URL lead to the same database."""
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE via_socket ()")
    with psycopg.connect(db_tcp_url) as conn:
        assert conn.info.host == conninfo_to_dict(db_tcp_url)["host"]
        assert conn.execute("SELECT to_regclass('via_socket') IS NOT NULL").fetchone() == (True,)


def test_restart_keeps_data_and_url(pg_server: PgServer, db_url: str) -> None:
    """Stopping and starting PostgreSQL keeps committed rows and the same URL."""
    with psycopg.connect(db_url) as conn:
        conn.execute("CREATE TABLE kept (v text)")
        conn.execute("INSERT INTO kept VALUES ('before')")
    url_before = pg_server.url
    pg_server.stop()
    assert not pg_server.is_running()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(db_url, connect_timeout=2)
    pg_server.start()
    assert pg_server.url == url_before
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("before",)]


def test_crash_keeps_committed_data(pg_server: PgServer, db_url: str) -> None:
    """An immediate (crash) stop loses no committed row, and a client sees the drop."""
    conn = psycopg.connect(db_url, autocommit=True)
    conn.execute("CREATE TABLE kept (v text)")
    conn.execute("INSERT INTO kept VALUES ('committed')")
    pg_server.stop(mode="immediate")
    with pytest.raises(psycopg.OperationalError):
        conn.execute("SELECT 1")
    conn.close()
    pg_server.start()
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT v FROM kept").fetchall() == [("committed",)]


def test_devdb_cli_reports_the_session_server(pg_server: PgServer) -> None:
    """`python -m example.devdb status|url DIR` sees the running server and its URL."""
    if not pg_server.embedded:
        pytest.skip("the server in DATABASE_URL has no devdb data directory")
    run = [sys.executable, "-m", "example.devdb"]
    status = subprocess.run(
        [*run, "status", str(pg_server.datadir)], cwd=REPO, capture_output=True, text=True
    )
    assert (status.returncode, status.stdout.strip()) == (0, f"running: {pg_server.url}")
    tcp = subprocess.run(
        [*run, "url", "--tcp", str(pg_server.datadir)], cwd=REPO, capture_output=True, text=True
    )
    assert tcp.stdout.strip() == pg_server.tcp_url


def test_django_accepts_the_url(db_url: str) -> None:
    """django_database(db_url) gives a DATABASES entry Django connects with."""
    script = (
        "import sys, django\n"
        "from django.conf import settings\n"
        "from example.devdb import django_database\n"
        "settings.configure(DATABASES={'default': django_database(sys.argv[1])})\n"
        "django.setup()\n"
        "from django.db import connection\n"
        "with connection.cursor() as cur:\n"
        "    cur.execute('SELECT current_database()')\n"
        "    print(cur.fetchone()[0])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, db_url], cwd=REPO, capture_output=True, text=True
    )
    assert result.stderr == ""
    assert result.stdout.strip() == _dbname(db_url)


def test_with_dbname_keeps_the_url_form() -> None:
    """with_dbname swaps only the database, in URLs and in key=value strings."""
    socket_url = "postgresql://postgres@/postgres?host=/tmp/x&port=5"
    assert devdb.with_dbname(socket_url, "t1") == "postgresql://postgres@/t1?host=/tmp/x&port=5"
    assert conninfo_to_dict(devdb.with_dbname("host=h dbname=a", "b")) == {
        "host": "h",
        "dbname": "b",
    }


async def test_wait_for_returns_once_the_condition_holds() -> None:
    """wait_for polls a predicate until it is true and returns its value."""
    box: list[str] = []
    asyncio.get_running_loop().call_soon(box.append, "done")
    assert await wait_for(lambda: box) == ["done"]


async def test_wait_for_awaits_an_awaitable() -> None:
    """wait_for on a future returns the future's result."""
    future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(future.set_result, 7)
    assert await wait_for(future) == 7


async def test_wait_for_raises_at_the_deadline() -> None:
    """A condition that never holds ends in TimeoutError naming what was awaited."""
    with pytest.raises(TimeoutError, match="never"):
        await wait_for(lambda: False, timeout=0.01, what="never")
