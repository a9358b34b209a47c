"""install-triggers: idempotent, versioned, quoted, and clear about what it cannot do."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys

import psycopg
import pytest
from psycopg import sql

from bridge import install
from bridge.errors import InstallError
from tests.timing import wait_for


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "bridge", *args], env=env, text=True,
                          capture_output=True, timeout=60)


def test_install_is_idempotent_and_records_the_schema_version(db_url: str) -> None:
    """Installing twice leaves one set of triggers and the schema version recorded."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, owner text)")
        install.install(conn, "t")
        install.install(conn, "public.t", channel_column="owner")
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = 't'::regclass AND NOT tgisinternal"
        ).fetchone()
        version = conn.execute(
            "SELECT value FROM bridge.meta WHERE key = 'schema_version'").fetchone()
        watched = conn.execute("SELECT channel, channel_column FROM bridge.watched").fetchall()
    assert triggers == (4,)
    assert version == (str(install.SCHEMA_VERSION),)
    assert watched == [("t", "owner")]


def test_missing_table_and_missing_primary_key_are_clear_errors(db_url: str) -> None:
    """A table that does not exist, or has no primary key, is refused with a message."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE nopk (a int)")
        with pytest.raises(InstallError, match="does not exist"):
            install.install(conn, "public.nope")
        with pytest.raises(InstallError, match="no primary key"):
            install.install(conn, "nopk")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"channel": "bad; DROP TABLE t"}, "not valid"),
        ({"channel": "Upper"}, "not valid"),
        ({"channel_column": "owner; --"}, "not valid"),
        ({"channel_column": "missing"}, "has no column"),
    ],
)
def test_hostile_names_are_refused(db_url: str, kwargs: dict[str, str], message: str) -> None:
    """Channel and column names that are not plain identifiers never reach SQL."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, owner int)")
        with pytest.raises(InstallError, match=message):
            install.install(conn, "t", **kwargs)
        assert conn.execute("SELECT to_regclass('public.t')").fetchone() == ("t",)


def test_quoted_identifiers_work(db_url: str) -> None:
    """A table whose name needs quoting gets triggers that work."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute('CREATE SCHEMA "My Schema"')
        conn.execute('CREATE TABLE "My Schema"."Odd ""Name""" ("Key" int PRIMARY KEY)')
        install.install(conn, '"My Schema"."Odd ""Name"""', channel="odd")
        conn.execute('INSERT INTO "My Schema"."Odd ""Name""" VALUES (1)')
        conn.execute("SELECT bridge.stamp()")
        rows = conn.execute("SELECT channel, tbl, op, pks FROM bridge.log").fetchall()
    assert rows == [("odd", 'My Schema.Odd "Name"', "INSERT", ["1"])]


def test_composite_key_pks_are_arrays(db_url: str) -> None:
    """A composite primary key travels as an array of strings."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pair (a int, b text, PRIMARY KEY (a, b))")
        install.install(conn, "pair")
        conn.execute("INSERT INTO pair VALUES (1, 'x')")
        assert conn.execute("SELECT pks FROM bridge.log").fetchone() == ([["1", "x"]],)


def test_uninstall_removes_triggers_and_functions(db_url: str) -> None:
    """uninstall-triggers leaves the table without triggers and the bridge without functions."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        install.install(conn, "t")
        install.uninstall(conn, "t")
        conn.execute("INSERT INTO t VALUES (1)")
        assert conn.execute("SELECT count(*) FROM bridge.log").fetchone() == (0,)
        assert conn.execute(
            "SELECT count(*) FROM pg_proc WHERE proname LIKE 'capture_%'").fetchone() == (0,)
        with pytest.raises(InstallError, match="no bridge triggers"):
            install.uninstall(conn, "t")


def _statements(conn: psycopg.Connection) -> list[tuple[str, list[str], int]]:
    """The log as (channel, sorted keys, count) rows, in log order."""
    rows = conn.execute("SELECT channel, pks, count FROM bridge.log ORDER BY id").fetchall()
    return [(ch, sorted(map(str, pks or [])), n) for ch, pks, n in rows]


@pytest.mark.parametrize("column", [None, "owner"])
def test_an_update_that_changes_a_key_names_the_old_key_too(
    db_url: str, column: str | None
) -> None:
    """Renumbering a row names its old and new key on the table's channel (and on the row
    channel); an UPDATE that changes no key names each row once."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, owner text, note text)")
        conn.execute("INSERT INTO t VALUES (1, 'a', ''), (2, 'a', '')")
        install.install(conn, "t", channel_column=column)
        conn.execute("UPDATE t SET note = 'x', id = id")
        plain = _statements(conn)
        conn.execute("TRUNCATE bridge.log")
        conn.execute("UPDATE t SET id = 5 WHERE id = 1")
        renumbered = _statements(conn)
    rows = [("t", ["1", "2"], 2)] + ([("t:owner=a", ["1", "2"], 2)] if column else [])
    assert plain == rows
    assert renumbered[0] == ("t", ["1", "5"], 1)
    if column:
        assert renumbered[1][:2] == ("t:owner=a", ["1", "5"])


@pytest.mark.parametrize("key", ["id", "id, tag"])
def test_keys_up_to_the_cap_and_counts_past_it(db_url: str, key: str) -> None:
    """Each operation names its rows' keys up to the cap, in the statement's order when no
    key changed; one row more and pks is null but the count stays exact (the capture reads
    cap + 1 keys, then counts the rest)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE k (id int, tag text DEFAULT 'x', note text,"
                     f" PRIMARY KEY ({key}))")
        install.install(conn, "k", pks_cap=3)
        conn.execute("INSERT INTO k (id) VALUES (3), (1), (2)")
        conn.execute("INSERT INTO k (id) SELECT g FROM generate_series(10, 13) g")
        conn.execute("UPDATE k SET note = 'a' WHERE id < 10")
        conn.execute("UPDATE k SET note = 'b' WHERE id >= 10")
        conn.execute("UPDATE k SET id = id + 100 WHERE id IN (1, 2)")
        conn.execute("UPDATE k SET note = 'c' WHERE id = 0")
        conn.execute("DELETE FROM k WHERE id >= 10 AND id < 100")
        conn.execute("DELETE FROM k")
        rows = conn.execute("SELECT op, pks, count FROM bridge.log ORDER BY id").fetchall()

    def keys(*ids: int) -> list[object]:
        return [str(i) if key == "id" else [str(i), "x"] for i in ids]

    assert rows == [
        ("INSERT", keys(3, 1, 2), 3),
        ("INSERT", None, 4),
        ("UPDATE", keys(3, 1, 2), 3),
        ("UPDATE", None, 4),
        ("UPDATE", sorted(keys(1, 101, 102, 2), key=lambda k: str(k)), 2),
        ("DELETE", None, 4),
        ("DELETE", keys(3, 101, 102), 3),
    ]


def test_a_composite_key_change_is_logged_under_both_keys(db_url: str) -> None:
    """A key of two columns: changing one of them names the old and the new pair."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE c (a int, b int, PRIMARY KEY (a, b))")
        conn.execute("INSERT INTO c VALUES (1, 2)")
        install.install(conn, "c")
        conn.execute("UPDATE c SET b = 3")
        rows = conn.execute("SELECT pks, count FROM bridge.log ORDER BY id").fetchall()
    assert rows == [([["1", "2"], ["1", "3"]], 1)]


def test_a_row_moving_to_another_partition_names_its_old_key(db_url: str) -> None:
    """A partitioned table's key includes the partition key: moving a row changes its key,
    and PostgreSQL fires no UPDATE row trigger for the move, so the OLD table must name it."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE pt (id int, region int, PRIMARY KEY (id, region))"
                     " PARTITION BY LIST (region)")
        conn.execute("CREATE TABLE pt1 PARTITION OF pt FOR VALUES IN (1)")
        conn.execute("CREATE TABLE pt2 PARTITION OF pt FOR VALUES IN (2)")
        conn.execute("INSERT INTO pt VALUES (1, 1)")
        install.install(conn, "pt")
        conn.execute("TRUNCATE bridge.log")
        conn.execute("UPDATE pt SET region = 2")
        rows = conn.execute("SELECT op, pks, count FROM bridge.log ORDER BY id").fetchall()
    assert rows == [("UPDATE", [["1", "1"], ["1", "2"]], 1)]


def test_keys_changed_behind_the_statement_are_named_too(db_url: str) -> None:
    """Keys changed where no UPDATE OF <key> row trigger would look: by a BEFORE trigger,
    and on an inheritance child's row updated through its parent."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE b (id text PRIMARY KEY, note text)")
        conn.execute("CREATE FUNCTION rekey() RETURNS trigger LANGUAGE plpgsql AS"
                     " $$BEGIN NEW.id := NEW.id || NEW.note; RETURN NEW; END$$")
        conn.execute("CREATE TRIGGER rekey BEFORE UPDATE ON b FOR EACH ROW"
                     " EXECUTE FUNCTION rekey()")
        conn.execute("INSERT INTO b VALUES ('x', '')")
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE child () INHERITS (parent)")
        conn.execute("INSERT INTO child VALUES (2)")
        install.install(conn, "b")
        install.install(conn, "parent")
        conn.execute("UPDATE b SET note = '1'")
        conn.execute("UPDATE parent SET id = 20 WHERE id = 2")
        rows = conn.execute("SELECT channel, pks FROM bridge.log ORDER BY id").fetchall()
    assert [(ch, sorted(pks)) for ch, pks in rows] == [("b", ["x", "x1"]), ("parent", ["2", "20"])]


def test_cli_install_dry_run_and_errors(db_url: str) -> None:
    """The CLI installs, prints SQL with --dry-run, and exits 2 with a message on errors."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE example_task (id int PRIMARY KEY, owner_id int)")
    dry = _cli(db_url, "install-triggers", "example_task", "--dry-run")
    assert dry.returncode == 0 and "CREATE TRIGGER" in dry.stdout
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT to_regclass('bridge.watched')").fetchone() == (None,)
    done = _cli(db_url, "install-triggers", "public.example_task", "--channel-column", "owner_id")
    assert done.returncode == 0, done.stderr
    assert "channel example_task and example_task:owner_id=<value>" in done.stdout
    missing = _cli(db_url, "install-triggers", "nope")
    assert missing.returncode == 2
    assert "error: table 'nope' does not exist" in missing.stderr
    two = _cli(db_url, "install-triggers", "a", "b", "--channel", "x")
    assert two.returncode == 2 and "exactly one table" in two.stderr


def test_make_install_triggers(db_url: str) -> None:
    """`make install-triggers DATABASE_URL=... TABLES=...` installs, and refuses without TABLES."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE example_task (id int PRIMARY KEY)")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ok = subprocess.run(["make", "-s", "install-triggers", f"DATABASE_URL={db_url}",
                         "TABLES=public.example_task"], cwd=repo, text=True,
                        capture_output=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    with psycopg.connect(db_url, autocommit=True) as conn:
        assert conn.execute("SELECT tbl FROM bridge.watched").fetchall() == [
            ("public.example_task",)]
    refused = subprocess.run(["make", "-s", "install-triggers", f"DATABASE_URL={db_url}"],
                             cwd=repo, text=True, capture_output=True, timeout=60)
    assert refused.returncode != 0 and "set TABLES" in refused.stderr


@pytest.mark.parametrize("table", ["bridge.tick", "bridge.log", "bridge.meta", "bridge.watched",
                                   '"bridge"."own_table"'])
def test_tables_of_the_bridge_schema_are_refused(db_url: str, table: str) -> None:
    """A table of the bridge schema is never watched: its writes would feed the log forever."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        install.install(conn, "t")  # creates the bridge schema
        conn.execute("CREATE TABLE bridge.own_table (id int PRIMARY KEY)")
        with pytest.raises(InstallError, match="belongs to the bridge itself: watching it would"):
            install.install(conn, table)
        with pytest.raises(InstallError, match="belongs to the bridge itself"):
            install.plan(conn, table)
        watched = conn.execute("SELECT tbl FROM bridge.watched").fetchall()
        foreign = conn.execute(
            "SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = 'bridge' AND NOT t.tgisinternal").fetchone()
    assert watched == [("public.t",)]
    assert foreign == (0,)


def test_cli_refuses_to_watch_the_bridge_schema(db_url: str) -> None:
    """`python -m bridge install-triggers bridge.tick` exits 2 naming the loop, --dry-run too."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY)")
        install.install(conn, "t")
    for extra in ((), ("--dry-run",)):
        refused = _cli(db_url, "install-triggers", "bridge.tick", *extra)
        assert refused.returncode == 2, refused.stdout
        assert ("error: bridge.tick belongs to the bridge itself: watching it would log every"
                " log write in an endless loop") in refused.stderr
        assert "CREATE TRIGGER" not in refused.stdout


def _notifies_after_update(db_url: str) -> int:
    """Commit one UPDATE of t from a fresh session; count the NOTIFYs a listener gets."""
    with psycopg.connect(db_url, autocommit=True) as listen:
        listen.execute("LISTEN pg_notify_bridge")
        with psycopg.connect(db_url, autocommit=True) as writer:
            writer.execute("UPDATE t SET owner = 'x' WHERE id = 1")
        listen.execute("SELECT 1")  # notifications that arrived are read with this reply
        return sum(1 for n in listen.notifies(timeout=0.5) if n.payload == "")


def test_writers_notify_only_while_the_guard_key_is_held_or_awaited(db_url: str) -> None:
    """A writer NOTIFYs while a session holds the guard key or waits for it, not otherwise."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int PRIMARY KEY, owner text)")
        conn.execute("INSERT INTO t VALUES (1, 'a')")
        install.install(conn, "t")
    assert _notifies_after_update(db_url) == 0
    with psycopg.connect(db_url, autocommit=True) as daemon:
        daemon.execute("SELECT pg_advisory_lock(%s)", (install.GUARD_KEY,))
        assert _notifies_after_update(db_url) == 1
    # A writer holding the key shared keeps a waiting daemon out; later writers NOTIFY.
    with psycopg.connect(db_url) as long_writer, \
            psycopg.connect(db_url, autocommit=True) as daemon:
        long_writer.execute("SELECT pg_advisory_xact_lock_shared(%s)", (install.GUARD_KEY,))
        daemon.execute("SET lock_timeout = '60s'")
        daemon.pgconn.send_query(f"SELECT pg_advisory_lock({install.GUARD_KEY})".encode())
        with psycopg.connect(db_url, autocommit=True) as probe:
            asyncio.run(wait_for(lambda: probe.execute(
                "SELECT cardinality(pg_blocking_pids(%s)) > 0", (daemon.info.backend_pid,)
            ).fetchone() == (True,), what="the daemon's request for the key to be queued"))
        assert _notifies_after_update(db_url) == 1
        long_writer.execute("UPDATE t SET owner = 'y' WHERE id = 1")  # never waits
        long_writer.commit()
        while daemon.pgconn.get_result() is not None:
            pass


def test_stamp_uses_the_guard_key_of_the_triggers() -> None:
    """sql/schema.sql spells the same guard key as install.GUARD_KEY."""
    assert f"pg_try_advisory_xact_lock_shared({install.GUARD_KEY})" in install.schema_sql()


def _upgrade_from(conn: psycopg.Connection, version: int, op: str, old_body: str) -> str:
    """Watch tables a and b, put back what schema `version` left in a's `op` capture
    (`old_body`), install b again; a's regenerated capture function's source."""
    conn.execute("CREATE TABLE a (id int PRIMARY KEY)")
    conn.execute("CREATE TABLE b (id int PRIMARY KEY)")
    install.install(conn, "a")
    install.install(conn, "b")
    conn.execute("UPDATE bridge.meta SET value = %s WHERE key = 'schema_version'", (str(version),))
    fn = install.function_name(install.resolve(conn, "a"), op)
    conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
                         " AS {}").format(sql.Identifier("bridge", fn), sql.Literal(old_body)))
    install.install(conn, "b")
    body = conn.execute("SELECT prosrc FROM pg_proc WHERE proname = %s", (fn,)).fetchone()
    assert body is not None
    return str(body[0])


def test_upgrade_regenerates_every_watched_tables_capture(db_url: str) -> None:
    """install-triggers on one table upgrades an older schema's capture of the other tables."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        # What schema 4 installed: a NOTIFY in every transaction.
        body = _upgrade_from(conn, 4, "TRUNCATE",
                             "BEGIN PERFORM pg_notify('pg_notify_bridge', ''); RETURN NULL; END")
        version = conn.execute(
            "SELECT value FROM bridge.meta WHERE key = 'schema_version'").fetchone()
    assert "pg_try_advisory_xact_lock_shared" in body
    assert version == (str(install.SCHEMA_VERSION),)


def test_upgrade_from_5_regenerates_the_key_capture(db_url: str) -> None:
    """Schema 6 reads keys into an array instead of counting and aggregating: an upgrade
    from 5 replaces the older capture of every watched table."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        body = _upgrade_from(conn, 5, "UPDATE",
                             "BEGIN PERFORM count(*) FROM bridge_new; RETURN NULL; END")
        conn.execute("INSERT INTO a VALUES (1)")
        conn.execute("UPDATE a SET id = 2")
        rows = conn.execute("SELECT op, pks, count FROM bridge.log ORDER BY id").fetchall()
    assert "cardinality(k)" in body
    assert rows == [("INSERT", ["1"], 1), ("UPDATE", ["1", "2"], 1)]


# -- the channel column: the single-row path against the general statement -------------

_OWNERS = ["a", "b", "c.d", None, "", "bad value", "x" * 64, "y" * 65]


def _set_bodies(conn: psycopg.Connection, table: str, column: str, cap: int, *,
                single_row: bool) -> None:
    """Regenerate `table`'s capture functions, with or without the single-row path."""
    info = install.resolve(conn, table)
    channel = install.default_channel(info)
    for op in install.OPS:
        body = install._function_body(info, op, channel, column, cap, single_row=single_row)
        conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
                             " AS {}").format(sql.Identifier("bridge", install.function_name(
                                 info, op)), sql.Literal(body.as_string(conn))))


def _logged(conn: psycopg.Connection) -> list[tuple[str, str, str, list[str] | None, int]]:
    """The log's rows as a sorted multiset, each with its keys sorted (order is not promised)."""
    rows = conn.execute("SELECT channel, tbl, op, pks, count FROM bridge.log").fetchall()
    return sorted(((ch, tbl, op, None if pks is None else sorted(map(str, pks)), n)
                   for ch, tbl, op, pks, n in rows), key=repr)


def _both(conn: psycopg.Connection, table: str, column: str, cap: int,
          statement: str) -> tuple[list[object], list[object]] | None:
    """The log rows of `statement` under the general statement alone (rolled back) and under
    the generated function (committed); None when the statement fails."""
    conn.execute("TRUNCATE bridge.log")
    try:
        with conn.transaction(force_rollback=True):
            _set_bodies(conn, table, column, cap, single_row=False)
            conn.execute(statement)
            reference: list[object] = list(_logged(conn))
    except psycopg.errors.Error:
        return None
    conn.execute(statement)
    got: list[object] = list(_logged(conn))
    return reference, got


def _random_statement(rng: random.Random, table: str, key: str, region: bool) -> str:
    """One INSERT, UPDATE or DELETE of one to a few rows, some moving keys or channels."""
    def owner() -> str:
        value = rng.choice(_OWNERS)
        return "NULL" if value is None else f"'{value}'"

    def row() -> str:
        tag = f", '{rng.choice('pq')}'" if key == "composite" else ""
        reg = f", {rng.choice((1, 2))}" if region else ""
        return f"({rng.randrange(12)}{tag}{reg}, {owner()})"

    cols = "id" + (", tag" if key == "composite" else "") + (", region" if region else "")
    ids = ", ".join(str(rng.randrange(12)) for _ in range(rng.choice((1, 1, 1, 2, 4))))
    where = rng.choice([f"id = {rng.randrange(12)}", f"id IN ({ids})", "id < 6", "true"])
    kind = rng.choice(["insert", "update", "update", "update", "rekey", "move", "delete"])
    if kind == "insert":
        rows = ", ".join(row() for _ in range(rng.choice((1, 1, 1, 2, 3))))
        return f"INSERT INTO {table} ({cols}, owner) VALUES {rows} ON CONFLICT DO NOTHING"
    if kind == "update":
        change = rng.choice(["note = note || 'x'", f"owner = {owner()}",
                             f"owner = {owner()}, note = 'y'"])
        return f"UPDATE {table} SET {change} WHERE {where}"
    if kind == "rekey":
        return f"UPDATE {table} SET id = id + {rng.choice((1, 20))} WHERE {where}"
    if kind == "move" and region:
        return f"UPDATE {table} SET region = 3 - region WHERE {where}"
    return f"DELETE FROM {table} WHERE {where}"


@pytest.mark.parametrize(("shape", "cap"), [("plain", 100), ("plain", 2), ("plain", 0),
                                            ("composite", 2), ("partitioned", 100),
                                            ("partitioned", 1), ("inherited", 2)])
def test_the_channel_column_logs_what_the_general_statement_logs(
    db_url: str, shape: str, cap: int
) -> None:
    """Random one- to many-row INSERT, UPDATE and DELETE statements (keys and channel values
    changing or not, NULL and invalid values, rows moving between partitions, inheritance
    children) log the same rows with the single-row path as with the general statement."""
    rng = random.Random(f"{shape}-{cap}")
    key = "composite" if shape == "composite" else "id"
    region = shape == "partitioned"
    with psycopg.connect(db_url, autocommit=True) as conn:
        pk = "id, tag" if key == "composite" else "id, region" if region else "id"
        conn.execute(f"CREATE TABLE t (id int, tag text DEFAULT 'p', region int DEFAULT 1,"
                     f" owner text, note text DEFAULT '', PRIMARY KEY ({pk}))"
                     + (" PARTITION BY LIST (region)" if region else ""))
        if region:
            conn.execute("CREATE TABLE t1 PARTITION OF t FOR VALUES IN (1)")
            conn.execute("CREATE TABLE t2 PARTITION OF t FOR VALUES IN (2)")
        if shape == "inherited":
            conn.execute("CREATE TABLE tc () INHERITS (t)")
            conn.execute("INSERT INTO tc (id, owner) SELECT g, 'a' FROM generate_series(0, 5) g")
        install.install(conn, "t", channel_column="owner", pks_cap=cap)
        source = conn.execute(
            "SELECT prosrc FROM pg_proc WHERE proname LIKE 'capture%%_update'").fetchone()
        assert source is not None and ("IF n = 1" in source[0]) == (cap >= 1)
        compared = single = 0
        for _ in range(150):
            result = _both(conn, "t", "owner", cap,
                           _random_statement(rng, "t", key, region))
            if result is None:
                continue
            reference, got = result
            assert got == reference
            compared += 1
            single += any(r[4] == 1 and ":owner=" in r[0] for r in got)  # type: ignore[index]
    assert compared > 100 and single > 20


@pytest.mark.parametrize("op", ["INSERT", "UPDATE", "DELETE"])
def test_a_single_row_logs_its_valid_channel_values(db_url: str, op: str) -> None:
    """One row: a valid value gets the event with the row's key; NULL, empty, invalid and
    65-character values get none; an UPDATE that changes the value logs both, once each."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, tag text, owner text, note text,"
                     " PRIMARY KEY (id, tag))")
        values = ["a", None, "", "bad value", "x" * 65]
        for i, value in enumerate(values):
            conn.execute("INSERT INTO t VALUES (%s, 'p', %s, '')", (i, value))
        install.install(conn, "t", channel_column="owner")
        for i in range(len(values)):
            if op == "INSERT":
                conn.execute("INSERT INTO t SELECT id, 'q', owner, note FROM t WHERE id = %s",
                             (i,))
            elif op == "UPDATE":
                conn.execute("UPDATE t SET note = 'n' WHERE id = %s", (i,))
            else:
                conn.execute("DELETE FROM t WHERE id = %s", (i,))
        tag = "q" if op == "INSERT" else "p"
        rows = conn.execute("SELECT channel, pks, count FROM bridge.log WHERE channel <> 't'"
                            " ORDER BY id").fetchall()
        conn.execute("INSERT INTO t VALUES (9, 'p', 'a', '') ON CONFLICT DO NOTHING")
        conn.execute("TRUNCATE bridge.log")
        conn.execute("UPDATE t SET owner = 'b' WHERE id = 9")
        conn.execute("UPDATE t SET owner = NULL WHERE id = 9")
        conn.execute("UPDATE t SET owner = 'b' WHERE id = 9")
        conn.execute("UPDATE t SET owner = 'b' WHERE id = 9")
        changes = conn.execute("SELECT channel, pks, count FROM bridge.log WHERE channel <> 't'"
                               " ORDER BY id").fetchall()
    assert rows == [("t:owner=a", [["0", tag]], 1)]
    # a -> b logs both, b -> NULL the old value only, NULL -> b the new one, b -> b once
    assert sorted(changes) == sorted([("t:owner=b", [["9", "p"]], 1)] * 4
                                     + [("t:owner=a", [["9", "p"]], 1)])
