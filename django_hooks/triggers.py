"""Install, preview and inspect capture triggers through a Django database connection.

The SQL itself comes from bridge.install, so `manage.py bridge_install_triggers`
and `python -m bridge install-triggers` can never disagree. Django's own
connection is used (not a new one) so that test databases, atomic blocks and
the `--database` alias behave as Django users expect.
"""

from __future__ import annotations

from dataclasses import dataclass

import psycopg
from django.db import connections
from psycopg.pq import TransactionStatus

from bridge import install as bridge_install

from .watch import Target


def raw_connection(using: str) -> psycopg.Connection:
    """The psycopg 3 connection behind a Django alias (opened if needed)."""
    wrapper = connections[using]
    if wrapper.vendor != "postgresql":
        raise ValueError(
            f"database {using!r} is {wrapper.vendor}: pg-notify-bridge needs PostgreSQL"
        )
    wrapper.ensure_connection()
    conn = wrapper.connection
    if not isinstance(conn, psycopg.Connection):
        raise ValueError("pg-notify-bridge needs psycopg 3 (pip install 'psycopg[binary]')")
    if not conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
        # Inside Django's atomic block, which has not sent a statement yet: open its
        # transaction now, or psycopg's conn.transaction() would BEGIN and COMMIT it.
        conn.execute("SELECT 1")
    return conn


def install(target: Target, using: str = "default") -> str:
    """Install or refresh the triggers of one watched model; returns its channel."""
    return bridge_install.install(
        raw_connection(using), target.table_ref, **target.install_kwargs()
    )


def uninstall(target: Target, using: str = "default") -> None:
    bridge_install.uninstall(raw_connection(using), target.table_ref)


def plan_sql(target: Target, using: str = "default") -> list[str]:
    """The statements install() would run for this model (the schema aside), as text."""
    conn = raw_connection(using)
    return [
        statement.as_string(conn)
        for statement in bridge_install.plan(conn, target.table_ref, **target.install_kwargs())
    ]


@dataclass(frozen=True)
class State:
    """What the database holds for one table: its key, and its triggers if any."""

    table_exists: bool
    pk_columns: tuple[str, ...] = ()
    installed: bool = False
    trigger_count: int = 0
    channel: str | None = None
    channel_column: str | None = None
    installed_pk: tuple[str, ...] = ()


def state(target: Target, using: str = "default") -> State:
    """Read the table's primary key, its bridge triggers and its bridge.watched row."""
    conn = raw_connection(using)
    with conn.transaction():
        row = conn.execute(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
            (target.table_ref,),
        ).fetchone()
        if row is None:
            return State(table_exists=False)
        qualified = row[0]
        pk = bridge_install.primary_key(conn, target.table_ref)
        triggers = conn.execute(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(%s)"
            " AND tgname LIKE 'pg\\_notify\\_bridge\\_%%'",
            (target.table_ref,),
        ).fetchone()
        count = int(triggers[0]) if triggers else 0
        watched = None
        if bridge_install.has_schema(conn):
            watched = conn.execute(
                "SELECT channel, channel_column, pk_columns FROM bridge.watched WHERE tbl = %s",
                (qualified,),
            ).fetchone()
    if watched is None:
        return State(True, pk, installed=False, trigger_count=count)
    return State(
        True,
        pk,
        installed=True,
        trigger_count=count,
        channel=watched[0],
        channel_column=watched[1],
        installed_pk=tuple(watched[2]),
    )


def stale_reasons(target: Target, state: State) -> list[str]:
    """How installed triggers differ from what the settings ask (empty: up to date).

    Shared by the W002 check and migrate's report, so both say the same thing.
    """
    reasons = []
    if state.trigger_count != 4:
        reasons.append("its triggers are missing (was the table recreated?)")
    if state.pk_columns != state.installed_pk:
        reasons.append(
            f"primary key is now {', '.join(state.pk_columns)},"
            f" triggers were built for {', '.join(state.installed_pk)}"
        )
    if state.channel != target.channel:
        reasons.append(f"channel is {state.channel!r} in the database, {target.channel!r} here")
    if state.channel_column != target.channel_column:
        reasons.append(
            f"channel column is {state.channel_column!r} in the database,"
            f" {target.channel_column!r} here"
        )
    return reasons


def describe(target: Target, channel: str) -> str:
    """`channel X, rows also to X:col=<value>`: what a model's changes are sent to."""
    rows = f", rows also to {channel}:{target.channel_column}=<value>" \
        if target.channel_column else ""
    return f"channel {channel}{rows}"
