"""The tabs' query: PostgreSQL CPU per query, in bursts and spread (`python -m bench.refetch_cost`).

Scenario 7 (bench/compare.py) found a refetch cheaper when 100 tabs make
it at once after a change than when polling spreads the same query over
each second. This isolates that: one connection runs bench/tabs.py's
TASK_LIST in alternating rounds, `--queries` back to back (a burst), then
`--queries` with `--gap` seconds between them (polling's spacing), and reads
the backend's on-CPU time (/proc/<pid>/schedstat) around each query. The
same rounds run again on a copy of the table with an index on owner_id: the
example app's Task.owner is a Django ForeignKey, which is indexed, while the
bench's table has none, so every bench refetch scans 10,000 rows.

Prints one JSON object: median and mean microseconds per query for each
(table, spacing), over every query of every round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from .env import cluster
from .pgcpu import parse_schedstat
from .tabs import TASK_LIST


def _rounds(conn: psycopg.Connection, query: str, queries: int, rounds: int,
            gap: float) -> dict[str, list[int]]:
    """Per-query on-CPU ns of the backend, bursts and spread runs alternating."""
    schedstat = Path(f"/proc/{conn.info.backend_pid}/schedstat")
    out: dict[str, list[int]] = {"burst": [], "spread": []}
    for owner in range(3):  # prepare and warm up: not measured
        conn.execute(query, (owner,), prepare=True).fetchall()
    for r in range(rounds):
        for spacing in ("burst", "spread"):
            for i in range(queries):
                if spacing == "spread":
                    time.sleep(gap)
                before = parse_schedstat(schedstat.read_text())
                conn.execute(query, ((r * queries + i) % 100,), prepare=True).fetchall()
                out[spacing].append(parse_schedstat(schedstat.read_text()) - before)
    return out


def refetch_cost(queries: int, rounds: int, gap: float) -> dict[str, Any]:
    results: dict[str, Any] = {"queries": queries, "rounds": rounds, "gap_s": gap}
    with cluster() as pg:
        url = pg.create_database("bench_refetch_cost", triggers=False)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE TABLE example_task_indexed (LIKE example_task INCLUDING ALL)")
            conn.execute("INSERT INTO example_task_indexed SELECT * FROM example_task")
            conn.execute("CREATE INDEX ON example_task_indexed (owner_id)")
            conn.execute("VACUUM ANALYZE example_task_indexed")
            for table, query in (("example_task (no index, as in the bench)", TASK_LIST),
                                 ("with an index on owner_id (as Django makes)",
                                  TASK_LIST.replace("example_task", "example_task_indexed"))):
                spent = _rounds(conn, query, queries, rounds, gap)
                results[table] = {
                    spacing: {"median_us": round(statistics.median(ns) / 1e3, 1),
                              "mean_us": round(statistics.fmean(ns) / 1e3, 1), "n": len(ns)}
                    for spacing, ns in spent.items()}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.refetch_cost",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--queries", type=int, default=100, help="queries per run (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="burst/spread pairs (default 5)")
    parser.add_argument("--gap", type=float, default=0.01,
                        help="seconds between spread queries (default 0.01: 100 tabs polling)")
    args = parser.parse_args(argv)
    print(json.dumps(refetch_cost(args.queries, args.rounds, args.gap), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
