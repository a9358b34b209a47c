"""Install and remove the capture triggers that feed the event log.

Each watched table gets four statement-level triggers (INSERT, UPDATE, DELETE,
TRUNCATE), each calling a function generated for that table and operation.
An UPDATE captures its OLD rows as well as its NEW ones. Capturing only NEW
and logging changed keys from a row trigger measured about 10 us cheaper per
single-row UPDATE here, but PostgreSQL fires no UPDATE row trigger for a row
that moves to another partition (whose key changes with it) nor, on the
parent, for an inheritance child's row: those old keys would be lost.
The functions hold static SQL (no EXECUTE, no lookups at run time) because
the trigger runs on every write path of the user's application: the original
design measured dynamic capture at half the throughput of static per-table
functions. A statement appends one log row per channel it touches, whatever
its row count, and sends a constant NOTIFY (folded per transaction) only when
it cannot take the guard key shared. Each function runs as few queries as it
can, without aggregates: in a single-row write each query's executor setup,
not its rows, is what the writer pays (_function_body). With a channel
column, only a statement of several rows (or one whose key changed) runs the
aggregating statement that groups its rows by value; a one-row statement
writes all its log rows in one INSERT (_single_row). Every identifier and
literal goes through psycopg's `sql` module.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from . import channels
from .errors import InstallError

SCHEMA_VERSION = 6
NOTIFY_CHANNEL = "pg_notify_bridge"
WATCHED_PAYLOAD = "watched"
GUARD_KEY = 0x706E625F67756172  # "pnb_guar": one advisory key per database, for every daemon
"""A daemon sleeping on LISTEN holds this key exclusively; writers NOTIFY only when they
cannot take it shared (pg_try_advisory_xact_lock_shared never waits)."""
PKS_CAP = 100
SQL_DIR = Path(__file__).resolve().parent / "sql"
SCHEMA = "bridge"  # sql/schema.sql's schema: the log, the ticks and the capture functions
OPS = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
MAX_TABLE_NAME = 300  # two 63-byte identifiers, quoted, with every quote doubled


@dataclass(frozen=True)
class Table:
    """A table resolved in the catalog: its quoted-safe parts and primary key."""

    schema: str
    name: str
    pk_columns: tuple[str, ...]
    columns: frozenset[str]

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)


def schema_sql() -> str:
    """The text of sql/schema.sql, which creates or upgrades the `bridge` schema."""
    return (SQL_DIR / "schema.sql").read_text()


def ensure_schema(conn: psycopg.Connection) -> None:
    """Create or upgrade the `bridge` schema; safe to run any number of times.

    An upgrade from an older schema also regenerates the capture functions of
    every table already watched, so the whole database gets the new triggers
    (version 5: the NOTIFY guard; 6: keys read into an array, no aggregate, and a
    channel column's one-row statements logged in one INSERT)
    from one install-triggers run.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('pg_notify_bridge.install'))")
        before = _schema_version(conn)
        conn.execute(schema_sql())
        if before is not None and before < SCHEMA_VERSION:
            _refresh_watched(conn)


def _schema_version(conn: psycopg.Connection) -> int | None:
    """The installed schema's version, or None when there is no bridge schema yet."""
    if conn.execute("SELECT to_regclass('bridge.meta')").fetchone() == (None,):
        return None
    row = conn.execute("SELECT value FROM bridge.meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def _refresh_watched(conn: psycopg.Connection) -> None:
    """Regenerate the triggers of every watched table that still exists, as installed."""
    rows = conn.execute(
        "SELECT tbl, channel, channel_column FROM bridge.watched"
        " WHERE to_regclass(tbl) IS NOT NULL"
    ).fetchall()
    for tbl, channel, column in rows:
        for statement in plan(conn, tbl, channel=channel, channel_column=column):
            conn.execute(statement)


def resolve(conn: psycopg.Connection, table: str, *, to_watch: bool = True) -> Table:
    """Look `table` up in the catalog; raise InstallError when it cannot be watched.

    A table of the bridge schema is refused first (`to_watch=False` skips that,
    for uninstall(), which must still remove triggers an older version let
    onto one): each write to it would log a row, whose stamp would log another.

    The name only ever travels as a bound parameter to to_regclass(), which
    parses it as PostgreSQL would (quotes, schema) and returns NULL for no such
    table; what comes back from the catalog is then quoted with sql.Identifier.
    """
    if not table or len(table) > MAX_TABLE_NAME or not table.isprintable():
        raise InstallError(f"{table[:80]!r} is not a table name: use [schema.]table")
    try:
        row = conn.execute(
            """
            SELECT n.nspname, c.relname, c.relkind
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = to_regclass(%s)
            """,
            (table,),
        ).fetchone()
    except psycopg.errors.SyntaxError as exc:  # "a.b.c.d": improper relation name
        raise InstallError(f"{table!r} is not a table name: {exc}") from exc
    if row is None:
        raise InstallError(f"table {table!r} does not exist: check the name and the search_path")
    schema, name, kind = row
    if kind not in ("r", "p"):
        raise InstallError(f"{table!r} is not a table: triggers can only watch ordinary tables")
    if to_watch and schema == SCHEMA:
        raise InstallError(
            f"{schema}.{name} belongs to the bridge itself: watching it would log every log"
            f" write in an endless loop; watch your application's tables instead"
        )
    pk = primary_key(conn, table)
    if not pk:
        raise InstallError(
            f"table {schema}.{name} has no primary key: add one, events name rows by it"
        )
    cols = conn.execute(
        "SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(%s)"
        " AND attnum > 0 AND NOT attisdropped",
        (table,),
    ).fetchall()
    return Table(schema, name, pk, frozenset(r[0] for r in cols))


def primary_key(conn: psycopg.Connection, table: str) -> tuple[str, ...]:
    """The primary key's columns of `table` in key order; () when it has none."""
    rows = conn.execute(
        """
        SELECT a.attname
          FROM pg_index i
          JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) ON true
          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
         WHERE i.indrelid = to_regclass(%s) AND i.indisprimary
         ORDER BY k.ord
        """,
        (table,),
    ).fetchall()
    return tuple(r[0] for r in rows)


HAS_SCHEMA = ("SELECT to_regclass('bridge.meta') IS NOT NULL"
              " AND to_regclass('bridge.log') IS NOT NULL")
"""Whether install-triggers has created the bridge schema (the one check; NoSchemaError's)."""


def has_schema(conn: psycopg.Connection) -> bool:
    row = conn.execute(HAS_SCHEMA).fetchone()
    return bool(row and row[0])


def default_channel(table: Table) -> str:
    """The channel a table emits to unless told otherwise: its name without the schema."""
    if not channels.BASE_RE.match(table.name):
        raise InstallError(
            f"table name {table.name!r} is not a valid channel name: pass --channel NAME"
            " (lower case letters, digits, _ and .)"
        )
    return table.name


def function_name(table: Table, op: str) -> str:
    """A stable, short function name per table and operation (table names can be 63 bytes)."""
    digest = hashlib.sha1(table.qualified.encode()).hexdigest()[:12]
    return f"capture_{digest}_{op.lower()}"


def plan(
    conn: psycopg.Connection,
    table: str,
    *,
    channel: str | None = None,
    channel_column: str | None = None,
    pks_cap: int = PKS_CAP,
) -> list[sql.Composed]:
    """The statements that install triggers on `table` (after the schema), for --dry-run too."""
    info = resolve(conn, table)
    channel = channel or default_channel(info)
    _check_channel(info, channel, channel_column)
    statements: list[sql.Composed] = []
    fnames = []
    for op in OPS:
        fname = function_name(info, op)
        fnames.append(fname)
        body = _function_body(info, op, channel, channel_column, pks_cap)
        statements.append(
            sql.SQL(
                "CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS {body}"
            ).format(fn=sql.Identifier("bridge", fname), body=sql.Literal(body.as_string(conn)))
        )
        trigger = sql.Identifier(f"pg_notify_bridge_{op.lower()}")
        statements.append(
            sql.SQL("DROP TRIGGER IF EXISTS {trg} ON {tbl}").format(trg=trigger, tbl=info.ident)
        )
        statements.append(
            sql.SQL(
                "CREATE TRIGGER {trg} AFTER {op} ON {tbl} {ref}FOR EACH STATEMENT"
                " EXECUTE FUNCTION {fn}()"
            ).format(
                trg=trigger,
                op=sql.SQL(op),
                tbl=info.ident,
                ref=sql.SQL(_REFERENCING[op]),
                fn=sql.Identifier("bridge", fname),
            )
        )
    statements.extend(_register(info, channel, channel_column, fnames))
    return statements


def _register(info: Table, channel: str, channel_column: str | None,
              fnames: list[str]) -> list[sql.Composed]:
    """Record the table in bridge.watched and tell running daemons (they reload the channels)."""
    return [
        sql.SQL(
            "INSERT INTO bridge.watched (tbl, channel, channel_column, pk_columns, functions)"
            " VALUES ({tbl}, {ch}, {col}, {pk}, {fns})"
            " ON CONFLICT (tbl) DO UPDATE SET channel = excluded.channel,"
            " channel_column = excluded.channel_column, pk_columns = excluded.pk_columns,"
            " functions = excluded.functions, installed_at = now()"
        ).format(
            tbl=sql.Literal(info.qualified),
            ch=sql.Literal(channel),
            col=sql.Literal(channel_column),
            pk=sql.Literal(list(info.pk_columns)),
            fns=sql.Literal(fnames),
        ),
        sql.SQL("SELECT pg_notify({ch}, {payload})").format(
            ch=sql.Literal(NOTIFY_CHANNEL), payload=sql.Literal(WATCHED_PAYLOAD)
        ),
    ]


def _check_channel(info: Table, channel: str, channel_column: str | None) -> None:
    """Refuse a channel or channel column that could not name valid channels."""
    if not channels.BASE_RE.match(channel):
        raise InstallError(
            f"channel {channel!r} is not valid: use lower case letters, digits, _ and ."
        )
    row_suffix = len(f":{channel_column}=") + 64 if channel_column else 0
    if len(channel) + row_suffix > channels.MAX_LENGTH:
        raise InstallError(
            f"channel {channel[:80]!r} is too long: its channels must fit in"
            f" {channels.MAX_LENGTH} characters"
        )
    if channel_column is not None:
        if not channels.COLUMN_RE.match(channel_column):
            raise InstallError(
                f"channel column {channel_column!r} is not valid: use a lower case column name"
            )
        if channel_column not in info.columns:
            raise InstallError(f"table {info.qualified} has no column {channel_column!r}")


def install(
    conn: psycopg.Connection,
    table: str,
    *,
    channel: str | None = None,
    channel_column: str | None = None,
    pks_cap: int = PKS_CAP,
) -> str:
    """Install (or refresh) the capture triggers of `table`; returns its channel."""
    try:
        ensure_schema(conn)
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(hashtext('pg_notify_bridge.install'))")
            for statement in plan(
                conn, table, channel=channel, channel_column=channel_column, pks_cap=pks_cap
            ):
                conn.execute(statement)
    except psycopg.errors.UniqueViolation as exc:
        raise InstallError(
            f"channel {channel or table!r} is already used by another table: pass --channel"
        ) from exc
    except psycopg.errors.InsufficientPrivilege as exc:
        raise InstallError(
            f"not allowed to install triggers on {table}: connect as the table's owner, with"
            f" CREATE on the database for the bridge schema ({' '.join(str(exc).split())})"
        ) from exc
    row = conn.execute(
        "SELECT channel FROM bridge.watched WHERE tbl = %s", (resolve(conn, table).qualified,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def uninstall(conn: psycopg.Connection, table: str) -> None:
    """Remove the capture triggers and functions of `table`; its past events stay in the log."""
    if not has_schema(conn):
        raise InstallError("the database has no bridge schema: nothing is installed")
    info = resolve(conn, table, to_watch=False)
    with conn.transaction():
        row = conn.execute(
            "SELECT functions FROM bridge.watched WHERE tbl = %s", (info.qualified,)
        ).fetchone()
        if row is None:
            raise InstallError(f"table {info.qualified} has no bridge triggers")
        for op in OPS:
            trigger = sql.Identifier(f"pg_notify_bridge_{op.lower()}")
            conn.execute(
                sql.SQL("DROP TRIGGER IF EXISTS {trg} ON {tbl}").format(trg=trigger, tbl=info.ident)
            )
        for fname in row[0]:
            conn.execute(
                sql.SQL("DROP FUNCTION IF EXISTS {fn}()").format(fn=sql.Identifier("bridge", fname))
            )
        conn.execute("DELETE FROM bridge.watched WHERE tbl = %s", (info.qualified,))
        conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, WATCHED_PAYLOAD))


_REFERENCING = {
    "INSERT": "REFERENCING NEW TABLE AS bridge_new ",
    "UPDATE": "REFERENCING OLD TABLE AS bridge_old NEW TABLE AS bridge_new ",
    "DELETE": "REFERENCING OLD TABLE AS bridge_old ",
    "TRUNCATE": "",
}
_SOURCES = {"INSERT": ("bridge_new",), "UPDATE": ("bridge_new", "bridge_old"),
            "DELETE": ("bridge_old",)}
_NOTIFY = sql.SQL(
    "IF NOT pg_try_advisory_xact_lock_shared({key}) THEN\n"
    "    PERFORM pg_notify({ch}, '');\n  END IF;"
).format(key=sql.Literal(GUARD_KEY), ch=sql.Literal(NOTIFY_CHANNEL))


def _rows_and_key(info: Table, sources: tuple[str, ...],
                  column: str | None) -> tuple[sql.Composed, sql.Composed]:
    """The changed rows (key and channel column) of the transition tables, and their key as
    JSON: a string for a one-column key, an array of strings for a composite one."""
    wanted = [*info.pk_columns, *([column] if column else [])]
    rows = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {cols} FROM {src}").format(
            cols=sql.SQL(", ").join(map(sql.Identifier, wanted)), src=sql.Identifier(src)
        )
        for src in sources
    )
    if len(info.pk_columns) == 1:
        key = sql.SQL("to_jsonb(r.{}::text)").format(sql.Identifier(info.pk_columns[0]))
    else:
        key = sql.SQL("jsonb_build_array({})").format(
            sql.SQL(", ").join(
                sql.SQL("r.{}::text").format(sql.Identifier(c)) for c in info.pk_columns
            )
        )
    return rows, key


def _function_body(
    info: Table, op: str, channel: str, column: str | None, cap: int, *,
    single_row: bool = True,
) -> sql.Composed:
    """PL/pgSQL for one table and operation: static SQL, one log row per channel.

    The keys are read into an array, at most cap + 1 of them (LIMIT, no aggregate): its
    length is the row count, so the usual statement runs one query before its INSERT, and
    only a statement past the cap counts its rows. An aggregate costs more per call than
    the rows it reads (its executor setup: bench/RESULTS.md, "Writers and the NOTIFY
    guard"). An UPDATE reads its OLD keys the same way; when they equal the NEW ones (no
    key changed, the usual case) they are the same list, otherwise both lists are merged
    into one sorted list without duplicates.

    With a channel column, the same query also reads the first row's column value (NEW
    and, for an UPDATE, OLD). A single-row statement whose key did not change then writes
    the table's row and its row channels' in one INSERT ... VALUES and returns
    (_single_row): each value checked against the channel pattern in PL/pgSQL, the key
    already read. Any other statement runs the general INSERT ... SELECT (DISTINCT,
    GROUP BY, jsonb_agg, count), whose executor setup is what a single-row write paid for
    before (bench/RESULTS.md, "The channel column"). Both log the same rows;
    `single_row=False` generates the general statement alone, the reference that
    tests/test_install.py and bench.writers compare with.
    """
    tbl, opl = sql.Literal(info.qualified), sql.Literal(op)
    if op == "TRUNCATE":
        return sql.SQL(
            "BEGIN\n"
            "  INSERT INTO bridge.log (channel, tbl, op, pks, count)"
            " VALUES ({ch}, {tbl}, 'TRUNCATE', NULL, 0);\n"
            "  {notify}\n  RETURN NULL;\nEND"
        ).format(ch=sql.Literal(channel), tbl=tbl, notify=_NOTIFY)
    sources = _SOURCES[op]
    rows, key = _rows_and_key(info, sources, column)
    first = sql.Identifier(sources[0])
    fast = bool(column) and single_row and cap >= 1
    keys = {src: sql.SQL("ARRAY(SELECT {key} FROM {src} r LIMIT {limit})").format(
        key=key, src=sql.Identifier(src), limit=sql.Literal(cap + 1)) for src in sources}
    values = {src: sql.SQL("ARRAY(SELECT r.{col}::text FROM {src} r LIMIT 1)").format(
        col=sql.Identifier(column or ""), src=sql.Identifier(src)) for src in sources}
    merge: sql.Composable = sql.SQL("")
    if op == "UPDATE":
        read = sql.SQL("SELECT {new}, {old}{vals} INTO k, ko{into};").format(
            new=keys["bridge_new"], old=keys["bridge_old"],
            vals=sql.SQL(", {}, {}").format(values["bridge_new"], values["bridge_old"])
            if fast else sql.SQL(""),
            into=sql.SQL(", v, vo" if fast else ""))
        merge = sql.SQL(
            "  ELSIF k IS DISTINCT FROM ko THEN\n"
            "    k := ARRAY(SELECT DISTINCT x FROM unnest(k || ARRAY(SELECT {key} FROM {old} r))"
            " x ORDER BY x);\n").format(key=key, old=sql.Identifier("bridge_old"))
    elif fast:
        read = sql.SQL("SELECT {}, {} INTO k, v;").format(keys[sources[0]], values[sources[0]])
    else:
        read = sql.SQL("k := {};").format(keys[sources[0]])
    declare = ("  ko jsonb[];\n" if op == "UPDATE" else "") + (
        "  v text[];\n" + ("  vo text[];\n" if op == "UPDATE" else "") if fast else "")
    prefix = sql.Literal(f"{channel}:{column}=")
    parts = [
        sql.SQL(
            "DECLARE\n  n bigint;\n  k jsonb[];\n{declare}BEGIN\n"
            "  {read}\n"
            "  n := cardinality(k);\n"
            "{single}"
            "  IF n = 0 THEN\n    RETURN NULL;\n"
            "  ELSIF n > {cap} THEN\n"
            "    SELECT count(*) INTO n FROM {first};\n    k := NULL;\n"
            "{merge}"
            "  END IF;\n"
            "  INSERT INTO bridge.log (channel, tbl, op, pks, count)"
            " VALUES ({ch}, {tbl}, {op}, to_jsonb(k), n);\n"
        ).format(
            declare=sql.SQL(declare),
            read=read,
            single=_single_row(sql.Literal(channel), prefix, tbl, opl, op) if fast
            else sql.SQL(""),
            cap=sql.Literal(cap),
            first=first,
            merge=merge,
            ch=sql.Literal(channel),
            tbl=tbl,
            op=opl,
        )
    ]
    if column:
        parts.append(sql.SQL(
            "  INSERT INTO bridge.log (channel, tbl, op, pks, count)\n"
            "  SELECT {prefix} || s.v, {tbl}, {op},"
            " CASE WHEN count(*) <= {cap} THEN jsonb_agg(s.k) END, count(*)\n"
            "    FROM (SELECT DISTINCT {key} AS k, r.{col}::text AS v FROM ({rows}) r) s\n"
            "   WHERE s.v ~ {pattern}\n"
            "   GROUP BY s.v;\n"
        ).format(prefix=prefix, tbl=tbl, op=opl, cap=sql.Literal(cap), key=key,
                 col=sql.Identifier(column), rows=rows, pattern=_VALUE_PATTERN))
    parts.append(sql.SQL("  {notify}\n  RETURN NULL;\nEND").format(notify=_NOTIFY))
    return sql.Composed(parts)


_VALUE_PATTERN = sql.Literal("^[A-Za-z0-9_.-]{1,64}$")
"""A column value that can name a row channel; the daemon's channels.py accepts the same."""


def _single_row(channel: sql.Literal, prefix: sql.Literal, tbl: sql.Literal,
                opl: sql.Literal, op: str) -> sql.Composed:
    """The whole capture of a one-row statement: one INSERT ... VALUES of every log row.

    Generated only for cap >= 1, so n = 1 means the key read stopped below its limit:
    exactly one NEW (or OLD) row, its key in k. For an UPDATE, k = ko also means exactly
    one OLD row with the same key, so the general statement's groups are that key under
    the new value and under the old one, one group when they are equal. A NULL or invalid
    value logs nothing, as the general statement's WHERE does. One INSERT of two or three
    rows, not one INSERT per channel: each statement's executor setup costs the writer
    more than its rows (bench/RESULTS.md, "The channel column").
    """
    def insert(*values: str) -> sql.Composed:
        rows = [sql.SQL("({ch}, {tbl}, {op}, to_jsonb(k), 1)").format(ch=channel, tbl=tbl,
                                                                        op=opl)]
        rows += [sql.SQL("({prefix} || {v}, {tbl}, {op}, to_jsonb(k), 1)").format(
            prefix=prefix, v=sql.SQL(v), tbl=tbl, op=opl) for v in values]
        return sql.SQL("      INSERT INTO bridge.log (channel, tbl, op, pks, count) VALUES {};\n"
                       ).format(sql.SQL(", ").join(rows))

    if op == "UPDATE":
        branches = sql.SQL(
            "    IF v[1] ~ {p} THEN\n"
            "     IF vo[1] IS DISTINCT FROM v[1] AND vo[1] ~ {p} THEN\n{both}"
            "     ELSE\n{new}     END IF;\n"
            "    ELSIF vo[1] ~ {p} THEN\n{old}"
            "    ELSE\n{none}    END IF;\n"
        ).format(p=_VALUE_PATTERN, both=insert("v[1]", "vo[1]"), new=insert("v[1]"),
                 old=insert("vo[1]"), none=insert())
    else:
        branches = sql.SQL(
            "    IF v[1] ~ {p} THEN\n{new}    ELSE\n{none}    END IF;\n"
        ).format(p=_VALUE_PATTERN, new=insert("v[1]"), none=insert())
    return sql.SQL(
        "  IF n = 1{same} THEN\n{branches}    {notify}\n    RETURN NULL;\n  END IF;\n"
    ).format(same=sql.SQL(" AND k = ko" if op == "UPDATE" else ""), branches=branches,
             notify=_NOTIFY)
