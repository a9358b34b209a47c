"""deploy/sql: the daemon, the installer and a writer each work with only what the files grant."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from bridge.config import Config
from bridge.server import Daemon
from example.devdb import POSTGRES_BIN_PATH
from tests.django_site import REPO, child_env
from tests.fix_bridge import SECRET, TABLE_DDL, WsClient, token, v1_url
from tests.fix_db import PgServer
from tests.ops_support import DEPLOY
from tests.timing import scaled, wait_for


def as_role(url: str, role: str) -> str:
    return make_conninfo(url, user=role)


def psql(url: str, script: str, **variables: str) -> None:
    args = [str(POSTGRES_BIN_PATH / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url]
    for name, value in variables.items():
        args += ["-v", f"{name}={value}"]
    result = subprocess.run([*args, "-f", str(DEPLOY / "sql" / script)], capture_output=True,
                            text=True, timeout=scaled(60))
    assert result.returncode == 0, result.stderr


@pytest.fixture
def roles(db_url: str, pg_server: PgServer) -> Iterator[dict[str, str]]:
    """Fresh role names (roles are cluster-wide), dropped with what they own afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = {k: f"t_{k}_{suffix}" for k in ("installer", "daemon", "writer")}
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(TABLE_DDL)
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(names["writer"])))
        conn.execute(sql.SQL("GRANT INSERT, UPDATE ON example_task TO {}").format(
            sql.Identifier(names["writer"])))
        conn.execute(sql.SQL("GRANT USAGE ON SEQUENCE example_task_id_seq TO {}").format(
            sql.Identifier(names["writer"])))
    try:
        yield names
    finally:
        idents = sql.SQL(", ").join(sql.Identifier(n) for n in names.values())
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS bridge CASCADE"))
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(idents))
        with pg_server.connect() as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(idents))


async def test_least_privilege_roles_run_the_whole_pipeline(
    db_url: str, roles: dict[str, str]
) -> None:
    """roles.sql + grants.sql are enough to install, serve and write, and nothing more."""
    psql(db_url, "roles.sql", installer=roles["installer"], daemon=roles["daemon"],
         tables="public.example_task")
    installer_url = as_role(db_url, roles["installer"])
    installed = subprocess.run(
        [sys.executable, "-m", "bridge", "install-triggers", "public.example_task",
         "--channel-column", "owner_id"],
        env=child_env(DATABASE_URL=installer_url), cwd=REPO, capture_output=True, text=True,
        timeout=scaled(60),
    )
    assert installed.returncode == 0, installed.stderr
    psql(installer_url, "grants.sql", daemon=roles["daemon"], writers=roles["writer"])

    daemon_url, writer_url = as_role(db_url, roles["daemon"]), as_role(db_url, roles["writer"])
    daemon = Daemon(Config(database_url=daemon_url, port=0, secret_key=SECRET, ping_interval=0))
    await daemon.start()
    try:
        await wait_for(daemon.listener.ready.wait(), what="the daemon role's listener")
        client = await WsClient.connect(v1_url(daemon))
        await client.auth(token(1, "example_task"))
        await client.subscribe("example_task")
        with psycopg.connect(writer_url, autocommit=True) as conn:
            conn.execute("INSERT INTO example_task (title, owner_id) VALUES ('by writer', 3)")
        await client.expect("event", op="INSERT", table="public.example_task")
        await client.close()
    finally:
        await daemon.stop()

    with psycopg.connect(daemon_url, autocommit=True) as conn:
        conn.execute("SELECT bridge.prune('0 seconds'::interval)")  # prune is the daemon's
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM example_task")
    with psycopg.connect(writer_url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM bridge.log")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT bridge.stamp()")
