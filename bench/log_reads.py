"""How the daemon's log reads scale: EXPLAIN ANALYZE on a log of 1,000,000 rows.

    python -m bench.log_reads [--rows 1000000]

Builds a log the shape a busy table leaves: 100,000 ticks of 10 rows, every
statement writing its table channel and one of 1000 owners' row channels
(so the table channel holds half the log, each owner channel 1/2000 of it),
then runs the exact SQL of bridge/log.py (log.READ_AFTER, READ_CHANNEL,
READ_ROW_CHANNEL, and the daemon's other reads) under EXPLAIN (ANALYZE,
BUFFERS) and prints which index served each and what it cost (median of 5).
It also times bridge.stamp() and bridge.prune(), and a stamp while one
transaction stays open (dead index entries it keeps from being vacuumed).
The numbers in docs/guarantees.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

import psycopg

from bench.env import cluster
from bridge import log

TICK_ROWS = 10
OWNERS = 1000


def generate(conn: psycopg.Connection, rows: int) -> None:
    conn.execute(
        "INSERT INTO bridge.log (tick, channel, tbl, op, pks, count)"
        " SELECT g / %(per)s + 1, CASE WHEN g %% 2 = 0 THEN 'example_task'"
        "   ELSE 'example_task:owner_id=' || (g / 2) %% %(owners)s END,"
        "   'public.example_task', 'UPDATE', jsonb_build_array((g / 2)::text), 1"
        " FROM generate_series(0, %(last)s) g",
        {"per": TICK_ROWS, "owners": OWNERS, "last": rows - 1},
    )
    ticks = rows // TICK_ROWS
    conn.execute(
        "INSERT INTO bridge.tick (tick, stamped_at) SELECT t, now() - interval '2 hours'"
        " + t * (interval '1 hour' / %(ticks)s) FROM generate_series(1, %(ticks)s) t",
        {"ticks": ticks},
    )
    conn.execute("SELECT setval('bridge.tick_seq', %s)", (ticks,))
    conn.execute("VACUUM ANALYZE bridge.log")
    conn.execute("VACUUM ANALYZE bridge.tick")


def explain(conn: psycopg.Connection, query: str, params: Any) -> dict[str, Any]:
    """Median execution time of 5 runs (after one warm-up), the indexes used, rows, buffers."""
    times, plan = [], {}
    for i in range(6):
        row = conn.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + query,  # type: ignore[operator]
                           params).fetchone()
        assert row is not None
        plan = row[0][0]
        if i:
            times.append(plan["Execution Time"])
    text = json.dumps(plan)
    indexes = sorted({n["Index Name"] for n in _nodes(plan["Plan"]) if "Index Name" in n})
    scans = sorted({n["Node Type"] for n in _nodes(plan["Plan"]) if "Scan" in n["Node Type"]})
    return {"ms": statistics.median(times), "indexes": indexes, "scans": scans,
            "rows": plan["Plan"]["Actual Rows"], "sort": '"Node Type": "Sort"' in text,
            "buffers": plan["Plan"].get("Shared Hit Blocks", 0)
            + plan["Plan"].get("Shared Read Blocks", 0)}


def _nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    out = [node]
    for child in node.get("Plans", []):
        out.extend(_nodes(child))
    return out


def timed(conn: psycopg.Connection, query: str, params: Any = None) -> float:
    start = time.perf_counter()
    conn.execute(query, params)
    return (time.perf_counter() - start) * 1000


def reads(conn: psycopg.Connection, rows: int) -> list[tuple[str, dict[str, Any]]]:
    head = rows // TICK_ROWS
    end = {"upto_tick": head + 1, "upto_id": 0}
    row_ch = {"channel": "example_task:owner_id=7", "base": "example_task"}
    table_ch = {"channel": "example_task", "base": "example_task"}
    limit = 10_001  # replay_limit + 1
    cases: list[tuple[str, str, dict[str, Any]]] = [
        ("read_after: the reader, 1 tick behind", log.READ_AFTER,
         {"after_tick": head - 1, "after_id": 0, "limit": 1000}),
        ("read_after: a batch of 1000 from mid-log", log.READ_AFTER,
         {"after_tick": head // 2, "after_id": 0, "limit": 1000}),
        ("read_channel, row channel: last 1000 ticks", log.READ_ROW_CHANNEL,
         {**row_ch, **end, "after_tick": head - 1000, "after_id": 0, "limit": limit}),
        ("read_channel, row channel: the whole log", log.READ_ROW_CHANNEL,
         {**row_ch, **end, "after_tick": 0, "after_id": 0, "limit": limit}),
        ("read_channel, table channel: last 1000 ticks", log.READ_CHANNEL,
         {**table_ch, **end, "after_tick": head - 1000, "after_id": 0, "limit": limit}),
        ("read_channel, table channel: from mid-log", log.READ_CHANNEL,
         {**table_ch, **end, "after_tick": head // 2, "after_id": 0, "limit": limit}),
        ("head()", "SELECT tick, id FROM bridge.log WHERE tick IS NOT NULL"
         " ORDER BY tick DESC, id DESC LIMIT 1", {}),
        ("reconnect backlog count (replay_limit 10000)", log.COUNT_AFTER,
         {"after_tick": head // 2, "after_id": 0, "limit": limit}),
    ]
    return [(name, explain(conn, query, params)) for name, query, params in cases]


def writes(conn: psycopg.Connection, url: str) -> list[tuple[str, float]]:
    out = []
    add = ("INSERT INTO bridge.log (channel, tbl, op, pks, count)"
           " SELECT 'example_task', 'public.example_task', 'UPDATE', '[\"1\"]', 1"
           " FROM generate_series(1, %s)")
    conn.execute(add, (1,))
    out.append(("stamp(): 1 new row", timed(conn, "SELECT bridge.stamp()")))
    conn.execute(add, (1000,))
    out.append(("stamp(): 1000 new rows", timed(conn, "SELECT bridge.stamp()")))
    out.append(("stamp(): nothing to stamp", timed(conn, "SELECT bridge.stamp()")))
    # A transaction that stays open keeps VACUUM from removing the old, unstamped
    # versions the stamps leave behind in log_unstamped: each stamp walks them.
    with psycopg.connect(url) as holder:
        holder.execute("SELECT pg_current_xact_id()")
        for _ in range(50):
            conn.execute(add, (1000,))
            conn.execute("SELECT bridge.stamp()")
        conn.execute("VACUUM bridge.log")
        conn.execute(add, (1,))
        out.append(("stamp(): 1 row, after 50,000 stamped while a transaction stays open",
                    timed(conn, "SELECT bridge.stamp()")))
        holder.rollback()
    conn.execute("VACUUM bridge.log")
    conn.execute(add, (1,))
    out.append(("stamp(): 1 row, once that transaction ended and VACUUM ran",
                timed(conn, "SELECT bridge.stamp()")))
    # The generated ticks span the hour that ended an hour ago: 114 minutes keeps 90% of it.
    start = time.perf_counter()
    row = conn.execute("SELECT bridge.prune(interval '114 minutes')").fetchone()
    ms = (time.perf_counter() - start) * 1000
    out.append((f"prune(): the oldest tenth of the log ({row[0] if row else 0:,} rows)", ms))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="log rows to generate")
    args = parser.parse_args(argv)
    with cluster() as pg:
        url = pg.create_database("log_reads", triggers=True)
        with psycopg.connect(url, autocommit=True) as conn:
            started = time.perf_counter()
            generate(conn, args.rows)
            size = conn.execute("SELECT pg_size_pretty(pg_total_relation_size('bridge.log'))"
                                ).fetchone()
            print(f"log: {args.rows:,} rows, {size[0] if size else '?'} with indexes,"
                  f" generated in {time.perf_counter() - started:.1f}s\n")
            print("| query | index | scans | rows | sort | buffers | ms (median) |")
            print("|---|---|---|---:|---|---:|---:|")
            for name, r in reads(conn, args.rows):
                print(f"| {name} | {', '.join(r['indexes']) or '-'} | {', '.join(r['scans'])}"
                      f" | {r['rows']:.0f} | {'yes' if r['sort'] else 'no'} | {r['buffers']}"
                      f" | {r['ms']:.3f} |")
            print("\n| write | ms |\n|---|---:|")
            for name, ms in writes(conn, url):
                print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
