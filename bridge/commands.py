"""The subcommands other than serve: install-triggers, uninstall-triggers, token, status.

Thin: they open one connection, call install.py or read the catalog (or,
for token, sign with auth.py), and print what happened. Errors surface as
BridgeError subclasses with messages the user can act on.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from . import channels, install, log, metrics
from .auth import Verifier
from .config import Config, require
from .errors import ConfigError, DatabaseError, InstallError, NoSchemaError
from .listener import APPLICATION_NAME

ADMIN_APPLICATION_NAME = APPLICATION_NAME + " admin"


def connect(config: Config) -> psycopg.Connection:
    try:
        return psycopg.connect(str(config.database_url), autocommit=True,
                               application_name=ADMIN_APPLICATION_NAME, connect_timeout=10)
    except psycopg.OperationalError as exc:
        raise DatabaseError(f"cannot connect to the database: {' '.join(str(exc).split())}"
                            ) from exc


def token(config: Config, user: str, chans: Sequence[str], ttl: float | None) -> int:
    """Print a token for `user` granting `chans`, signed as Django's signing.dumps would."""
    require(config, "secret_key")
    bad = [c for c in chans if not channels.is_valid(c)]
    if bad:
        raise ConfigError(f"invalid channel name {bad[0]!r}: use lower case letters, digits, _"
                          " and ., with an optional :column=value")
    print(Verifier(config.secret_key).make(user, chans, ttl))
    return 0


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
    """Print one screen: instances (pg_stat_activity), the log, watched tables, daemon metrics.

    Returns 1 when a --metrics-url cannot be read, so scripts notice a dead daemon.
    """
    with connect(config) as conn:
        if not install.has_schema(conn):
            raise NoSchemaError()
        lines = _database_status(conn)
    for line in lines:
        print(line)
    failed = 0
    totals = [0, 0]
    for url in metrics_urls:
        try:
            summary = metrics.scrape(url)
        except (OSError, ValueError) as exc:
            failed += 1
            print(f"daemon {url}: unreachable ({' '.join(str(exc).split())})")
            continue
        totals[0] += summary.total_clients
        totals[1] += summary.total_subscriptions
        for line in _daemon_status(url, summary):
            print(line)
    if len(metrics_urls) > 1:
        print(f"total: {totals[0]} clients, {totals[1]} subscriptions on"
              f" {len(metrics_urls) - failed} of {len(metrics_urls)} daemons")
    return 1 if failed else 0


def _database_status(conn: psycopg.Connection) -> list[str]:
    meta: dict[str, str] = dict(conn.execute("SELECT key, value FROM bridge.meta").fetchall())
    db_id = meta.get("db_id", "?")
    lines = [f"database {conn.info.dbname} (db_id {db_id}, schema version"
             f" {meta.get('schema_version', '?')})"]
    instances = conn.execute(
        "SELECT application_name, coalesce(host(client_addr), 'local socket'), count(*),"
        " min(backend_start), now() - min(backend_start) FROM pg_stat_activity"
        " WHERE datname = current_database() AND application_name LIKE %s"
        " AND application_name <> %s GROUP BY 1, 2 ORDER BY 4",
        (APPLICATION_NAME + " %", ADMIN_APPLICATION_NAME),
    ).fetchall()
    lines.append(f"instances ({len(instances)}):")
    for name, addr, count, started, age in instances:
        lines.append(f"  {name}  from {addr}  {count} connections  since"
                     f" {started:%Y-%m-%d %H:%M:%S} ({_ago(age.total_seconds())})")
    counts = conn.execute(
        "SELECT count(*), count(*) FILTER (WHERE tick IS NULL) FROM bridge.log").fetchone()
    rows, unstamped = counts or (0, 0)
    size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('bridge.log'))").fetchone()
    ends = []
    for order in ("ASC", "DESC"):
        row = conn.execute(
            "SELECT l.tick, l.id, extract(epoch FROM now() - t.stamped_at) FROM bridge.log l"
            " LEFT JOIN bridge.tick t USING (tick) WHERE l.tick IS NOT NULL"
            f" ORDER BY l.tick {order}, l.id {order} LIMIT 1"
        ).fetchone()
        ends.append("none" if row is None else
                    f"{log.describe(db_id, (row[0], row[1]))}"
                    + ("" if row[2] is None else f" ({_ago(float(row[2]))})"))
    lines.append(f"log: {rows} rows, {size[0] if size else '?'}; oldest {ends[0]}, newest"
                 f" {ends[1]}; {unstamped} not yet stamped; pruned through tick"
                 f" {meta.get('pruned_through', '0')}")
    watched = conn.execute(
        "SELECT tbl, channel, channel_column FROM bridge.watched ORDER BY tbl").fetchall()
    lines.append(f"watched tables ({len(watched)}):")
    for tbl, channel, column in watched:
        lines.append(f"  {tbl} -> {channel}"
                     + (f" (+ {channel}:{column}=<value>)" if column else ""))
    return lines


def _daemon_status(url: str, s: metrics.Summary) -> list[str]:
    name = f" ({s.instance}, {s.version})" if s.instance else ""
    by_endpoint = ", ".join(f"{k} {int(v)}" for k, v in sorted(s.clients.items()))
    by_channel = ", ".join(f"{k} {int(v)}" for k, v in sorted(s.channels.items()) if v)
    p50, p99 = s.lag_quantile(0.5), s.lag_quantile(0.99)
    lag = ("no deliveries yet" if p50 is None or p99 is None else
           f"p50 <= {_ms(p50)}, p99 <= {_ms(p99)}, mean {_ms(s.lag_sum / s.lag_count)}"
           f" over {int(s.lag_count)} wakes")
    return [
        f"daemon {url}{name}: {'ready' if s.listener_up else 'NOT READY'}",
        f"  clients {s.total_clients} ({by_endpoint or 'none'});"
        f" subscriptions {s.total_subscriptions} ({by_channel or 'none'})",
        f"  lag {lag}",
        f"  events read {int(s.events_read)}, frames sent {int(s.frames_sent)}, resyncs"
        f" {int(s.resyncs)}, slow-consumer closes {int(s.slow_closes)}, listener reconnects"
        f" {int(s.listener_reconnects)}",
    ]


def _ms(seconds: float) -> str:
    return "inf" if seconds == float("inf") else f"{seconds * 1000:g}ms"


def _ago(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit} ago"
    return f"{seconds:.0f}s ago"
