"""The database subcommands: install-triggers, uninstall-triggers, status.

Thin: they open one connection, call install.py or read the catalog, and
print what happened. Errors surface as BridgeError subclasses with messages
the user can act on.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Sequence

import psycopg

from . import install
from .config import Config
from .errors import DatabaseError, InstallError


def connect(config: Config) -> psycopg.Connection:
    try:
        return psycopg.connect(str(config.database_url), autocommit=True,
                               application_name="pg_notify_bridge admin", connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {' '.join(str(exc).split())}"
                            ) from exc


def install_triggers(config: Config, tables: Sequence[str], channel: str | None,
                     channel_column: str | None, dry_run: bool) -> int:
    if channel and len(tables) > 1:
        raise InstallError("--channel names one table's channel: give exactly one table")
    with connect(config) as conn:
        if dry_run:
            print(install.schema_sql())
            for table in tables:
                for statement in install.plan(conn, table, channel=channel,
                                              channel_column=channel_column):
                    print(statement.as_string(conn) + ";")
            return 0
        for table in tables:
            name = install.install(conn, table, channel=channel, channel_column=channel_column)
            extra = f" and {name}:{channel_column}=<value>" if channel_column else ""
            print(f"installed triggers on {table}: channel {name}{extra}")
    return 0


def uninstall_triggers(config: Config, tables: Sequence[str]) -> int:
    with connect(config) as conn:
        for table in tables:
            install.uninstall(conn, table)
            print(f"removed triggers from {table}")
    return 0


def status(config: Config, metrics_urls: Sequence[str]) -> int:
    """Print instances (from pg_stat_activity), log size and positions, and daemon metrics."""
    with connect(config) as conn:
        if conn.execute("SELECT to_regclass('bridge.log')").fetchone() == (None,):
            raise DatabaseError("the database has no bridge schema: run make install-triggers")
        instances = conn.execute(
            "SELECT application_name, client_addr, backend_start, state FROM pg_stat_activity"
            " WHERE application_name LIKE 'pg_notify_bridge %%' AND query ILIKE 'LISTEN%%'"
            " ORDER BY backend_start"
        ).fetchall()
        rows, oldest, newest, unstamped = conn.execute(
            "SELECT count(*), min(tick), max(tick), count(*) FILTER (WHERE tick IS NULL)"
            " FROM bridge.log"
        ).fetchone() or (0, None, None, 0)
        size = conn.execute(
            "SELECT pg_size_pretty(pg_total_relation_size('bridge.log'))"
        ).fetchone()
        watched = conn.execute(
            "SELECT tbl, channel, channel_column FROM bridge.watched ORDER BY tbl"
        ).fetchall()
    print(f"instances ({len(instances)}):")
    for name, addr, started, state in instances:
        print(f"  {name}  from {addr or 'local socket'}  since {started:%Y-%m-%d %H:%M:%S}"
              f"  {state}")
    print(f"log: {rows} rows ({size[0] if size else '?'}), ticks {oldest} .. {newest},"
          f" {unstamped} not yet stamped")
    print(f"watched tables ({len(watched)}):")
    for tbl, channel, column in watched:
        print(f"  {tbl} -> {channel}" + (f" (+ {channel}:{column}=<value>)" if column else ""))
    for url in metrics_urls:
        print(f"daemon {url}:")
        for line in _metrics_summary(url):
            print(f"  {line}")
    return 0


_WANTED = re.compile(r"^(bridge_connections|bridge_listener_up|bridge_events_read_total|"
                     r"bridge_slow_consumer_closes_total|bridge_cursor_tick)\b")


def _metrics_summary(url: str) -> list[str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError as exc:
        return [f"unreachable: {exc}"]
    return [line for line in text.splitlines() if _WANTED.match(line)]
