"""PostgreSQL fixtures: one server per session, one fresh database per test.

By default the session runs its own embedded PostgreSQL (``example.devdb``)
in a temporary directory, with fsync off, and removes it at the end. With
``DATABASE_URL`` in the environment the tests use that server instead: they
create and drop their databases on it (the role needs CREATEDB), and the
tests that stop PostgreSQL are skipped, since it is not ours to stop.

Fixtures:
    pg_cluster (session)   the PgServer object
    pg_server (function)   the same object; restarts it after a test that
                           stopped it and did not start it again
    db_url (function)      URL of a new empty database, dropped after the test
    db_tcp_url (function)  the same database over TCP (skips if DATABASE_URL is a socket)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from example import devdb
from tests.timing import scaled

__all__ = ["PgServer", "temporary_database"]


class PgServer:
    """The session's PostgreSQL: where it is, and (if embedded) its switch."""

    def __init__(self, url: str, *, datadir: Path | None = None) -> None:
        #: URL of the maintenance database ``postgres`` (or DATABASE_URL's).
        self.url = url
        #: The data directory of an embedded server; None for DATABASE_URL.
        self.datadir = datadir
        self.stopped_by_test = False

    @property
    def embedded(self) -> bool:
        """Whether the suite runs this server (and so may stop it)."""
        return self.datadir is not None

    @property
    def tcp_url(self) -> str:
        """The maintenance URL over TCP 127.0.0.1 (DATABASE_URL as given)."""
        return devdb.tcp_url(self.datadir) if self.datadir is not None else self.url

    def url_for(self, dbname: str, *, tcp: bool = False) -> str:
        """The URL of database ``dbname`` on this server."""
        return devdb.with_dbname(self.tcp_url if tcp else self.url, dbname)

    def stop(self, mode: str = "fast") -> None:
        """Stop PostgreSQL (``mode="immediate"`` for a crash); skips if not ours."""
        datadir = self._own_datadir()
        self.stopped_by_test = True
        devdb.stop(datadir, mode=mode)

    def start(self) -> None:
        """Start PostgreSQL again: same data, same URLs."""
        devdb.start(self._own_datadir())
        self.stopped_by_test = False

    def restart(self, mode: str = "fast") -> None:
        """Stop then start."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        """Whether the server is up (always True for DATABASE_URL)."""
        return devdb.is_running(self.datadir) if self.datadir is not None else True

    def connect(self, dbname: str | None = None) -> psycopg.Connection:
        """An autocommit connection, to the maintenance database by default."""
        target = self.url if dbname is None else self.url_for(dbname)
        return psycopg.connect(target, autocommit=True, connect_timeout=int(scaled(10)))

    def _own_datadir(self) -> Path:
        if self.datadir is None:
            pytest.skip("stops PostgreSQL, which it may not do to the server in DATABASE_URL")
        return self.datadir

    def __repr__(self) -> str:
        return f"PgServer({self.url!r}, datadir={self.datadir!r})"


@contextmanager
def temporary_database(server: PgServer, hint: str = "test") -> Iterator[str]:
    """Create an empty database named after ``hint``; drop it (FORCE) on exit.

    ``template0``, not ``template1``: nothing a previous test installed in
    template1 leaks in, and no session on template1 can block the copy.
    """
    stem = re.sub(r"[^a-z0-9_]+", "_", hint.lower()).strip("_")[:40] or "test"
    name = f"t_{stem}_{uuid.uuid4().hex[:8]}"
    with server.connect() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield server.url_for(name)
    finally:
        if server.embedded and not server.is_running():
            server.start()
        with server.connect() as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


_TEMP_PREFIX = "pgnb-test-"


def _sweep_abandoned_servers() -> None:
    """Stop and delete servers left by pytest runs that were killed outright.

    A run that is interrupted tears its server down; one killed with SIGKILL
    (or pytest-timeout's thread method) cannot, and its postmaster would live
    on. Only directories whose owner process is gone are touched, so parallel
    runs on one machine leave each other alone.
    """
    for root in Path(tempfile.gettempdir()).glob(_TEMP_PREFIX + "*"):
        try:
            owner = int((root / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _process_exists(owner):
            continue
        with contextlib.suppress(devdb.DevDBError, OSError):
            devdb.stop(root / "pgdata", mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgServer]:
    """The session's server: DATABASE_URL's, or an embedded one we start."""
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        yield PgServer(external)
        return
    _sweep_abandoned_servers()
    root = Path(tempfile.mkdtemp(prefix=_TEMP_PREFIX))
    (root / "owner.pid").write_text(str(os.getpid()))
    datadir = root / "pgdata"
    try:
        devdb.start(datadir, fast=True)
        yield PgServer(devdb.url(datadir), datadir=datadir)
    finally:
        try:
            devdb.stop(datadir, mode="immediate")
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_server(pg_cluster: PgServer) -> Iterator[PgServer]:
    """The session's server, running again after the test if it stopped it."""
    yield pg_cluster
    if pg_cluster.stopped_by_test:
        pg_cluster.start()


@pytest.fixture
def db_url(pg_server: PgServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """URL of a new empty database for this test alone, dropped afterwards."""
    with temporary_database(pg_server, request.node.name) as url:
        yield url


@pytest.fixture
def db_tcp_url(pg_server: PgServer, db_url: str) -> str:
    """``db_url``'s database over TCP (127.0.0.1 when embedded), for pgbench and nginx tests."""
    url = pg_server.url_for(str(conninfo_to_dict(db_url)["dbname"]), tcp=True)
    host = str(conninfo_to_dict(url).get("host") or "")
    if not host or host.startswith("/"):
        pytest.skip("needs TCP, and DATABASE_URL connects through a Unix socket")
    return url
