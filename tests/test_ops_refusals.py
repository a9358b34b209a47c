"""The daemon refuses clearly what cannot work, and waits for a database that is not up yet."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

from example import devdb
from tests.django_site import free_port
from tests.fix_bridge import WsClient, execute, token
from tests.fix_db import PgServer
from tests.ops_support import BridgeProcess, http_status, run_serve
from tests.timing import scaled, wait_for

PGBOUNCER = "/usr/sbin/pgbouncer"


def as_postgres_user() -> dict[str, Any]:
    """subprocess arguments that drop root to the account devdb runs PostgreSQL as."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(devdb.SYSTEM_USER)
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def give_to_postgres_user(*paths: Path) -> None:
    if os.geteuid() == 0:
        account = pwd.getpwnam(devdb.SYSTEM_USER)
        for path in paths:
            os.chown(path, account.pw_uid, account.pw_gid)


def test_database_without_bridge_schema_is_refused(db_url: str) -> None:
    """`serve` on a database without the schema exits 2 saying to install triggers, no traceback."""
    code, output = run_serve(db_url)
    assert code == 2, output
    assert ("error: the database has no bridge schema: run `python -m bridge install-triggers"
            " TABLE...` first") in output
    assert "first" in output and "Traceback" not in output


@pytest.fixture
def standby(pg_server: PgServer) -> Iterator[str]:
    """A hot standby of the session's server (pg_basebackup -R), on its own port and socket."""
    if not pg_server.embedded:
        pytest.skip("builds a standby of the embedded server")
    root = Path(tempfile.mkdtemp(prefix="pgnb-standby-"))
    root.chmod(0o711)
    datadir = root / "pgdata"
    datadir.mkdir(mode=0o700)
    give_to_postgres_user(datadir)
    try:
        with pg_server.connect() as conn:
            row = conn.execute("SHOW max_connections").fetchone()
        assert row is not None
        subprocess.run(
            [str(devdb.POSTGRES_BIN_PATH / "pg_basebackup"), "-D", str(datadir), "-R",
             "--no-sync", "-d", pg_server.tcp_url],
            check=True, capture_output=True, timeout=scaled(120), cwd="/", **as_postgres_user(),
        )
        settings = datadir / "devdb.json"
        settings.write_text(json.dumps({"port": free_port(), "max_connections": int(row[0]),
                                        "fast": True}))
        give_to_postgres_user(settings)
        yield devdb.start(datadir)
    finally:
        devdb.stop(datadir, mode="immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_standby_is_refused(standby: str) -> None:
    """`serve` against a standby exits 2 naming the standby and pointing at the primary."""
    with psycopg.connect(standby, autocommit=True) as conn:
        assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
    code, output = run_serve(standby)
    assert code == 2, output
    assert "the database is a standby" in output and "primary" in output
    assert "Traceback" not in output


@pytest.fixture
def pgbouncer(pg_server: PgServer, watched_db: str) -> Iterator[str]:
    """A real PgBouncer in transaction pooling mode in front of watched_db; its URL."""
    if not Path(PGBOUNCER).exists():
        pytest.skip("needs Debian's pgbouncer (apt-get install pgbouncer; .ci/run does it)")
    server = conninfo_to_dict(pg_server.tcp_url)
    if not str(server.get("host", "")).startswith("127."):
        pytest.skip("needs the embedded server's TCP port")
    root = Path(tempfile.mkdtemp(prefix="pgnb-bouncer-"))
    root.chmod(0o755)
    port = free_port()
    dbname = conninfo_to_dict(watched_db)["dbname"]
    (root / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host=127.0.0.1 port={server['port']} user={devdb.SUPERUSER}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        "auth_type = any\npool_mode = transaction\ndefault_pool_size = 2\n"
    )
    (root / "pgbouncer.ini").chmod(0o644)
    proc = subprocess.Popen([PGBOUNCER, str(root / "pgbouncer.ini")], cwd="/",
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True,
                            **as_postgres_user())
    url = f"postgresql://{devdb.SUPERUSER}@127.0.0.1:{port}/{dbname}"
    try:
        end = time.monotonic() + scaled(30)
        while True:
            try:
                with psycopg.connect(url, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                break
            except psycopg.OperationalError:
                assert proc.poll() is None, "pgbouncer exited"
                assert time.monotonic() < end, "pgbouncer did not answer"
                time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(scaled(10))
        shutil.rmtree(root, ignore_errors=True)


def test_pgbouncer_transaction_pooling_is_refused(pgbouncer: str) -> None:
    """Through PgBouncer's transaction pooling the LISTEN probe fails and the daemon says why."""
    code, output = run_serve(pgbouncer)
    assert code == 2, output
    assert "LISTEN does not work on this connection" in output
    assert "PgBouncer's transaction pooling" in output and "Traceback" not in output


@pytest.fixture
async def late_daemon(pg_server: PgServer, watched_db: str) -> AsyncIterator[BridgeProcess]:
    """A daemon started while PostgreSQL is down (its socket directory has no server)."""
    pg_server.stop()
    daemon = BridgeProcess(watched_db).start()
    try:
        yield daemon
    finally:
        daemon.stop()


async def test_unreachable_database_at_start_is_retried(
    late_daemon: BridgeProcess, pg_server: PgServer, watched_db: str
) -> None:
    """Started before PostgreSQL, the daemon retries: /readyz is 503 until the server is up."""
    healthz, readyz = late_daemon.http + "/healthz", late_daemon.http + "/readyz"

    async def status(url: str) -> int | None:
        return await asyncio.to_thread(http_status, url)

    await wait_for(lambda: status(healthz), 60, what="the daemon's HTTP side")
    await wait_for(lambda: "database unreachable" in late_daemon.logs(), 30,
                   what="a failed connection attempt")
    assert await status(readyz) == 503
    assert await status(healthz) == 200
    pg_server.start()
    await late_daemon.ready()
    client = await WsClient.connect(late_daemon.url)
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task")
    execute(watched_db, "INSERT INTO example_task (title) VALUES ('after the wait')")
    await client.expect("event", op="INSERT")
    await client.close()
    assert late_daemon.proc is not None and late_daemon.proc.poll() is None
