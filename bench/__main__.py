"""`python -m bench [--quick] [--only NAME,...]`: run the scenarios, print the table, write results.

Writes bench/results/latest.json (every number, with the machine's
description), bench/results/*.png (plots) and the generated part of
bench/RESULTS.md. `make bench BENCH_ARGS=--quick` runs it from make.
"""

from __future__ import annotations

import argparse
import os
import resource
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import compare, delivery, idle, parts, peer, report, writers
from .env import Cluster, cluster, dump, machine

RESULTS = Path(__file__).resolve().parent / "results"

# name -> (quick settings, full settings); each a dict of keyword arguments.
PLANS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "latency_idle": ({"events": 100}, {"events": 1000}),
    "latency_loaded": ({"events": 300}, {"events": 2000}),
    "fanout_1k": ({"events": 40}, {"events": 100}),
    "fanout_10k": ({"events": 10}, {"events": 50}),
    "uvloop": ({}, {"events": 100}),
    "latency_parts": ({"events": 100}, {"events": 300}),
    "ingest": ({"seconds": 4}, {"seconds": 15}),
    "idle": ({"breakdown": False}, {"breakdown": True}),
    "writer_cost": ({"seconds": 2, "rounds": 1, "variants": ["plain", "triggers", "daemon"]},
                    {"seconds": 4, "rounds": 5, "variants": [
                        "plain", "triggers", "daemon", "notify_always", "notify_always_daemon",
                        "log_only"]}),
    "writer_latency": ({"seconds": 3}, {"seconds": 10}),
    "bulk": ({"repeats": 5}, {"repeats": 15}),
    "breakdown": ({}, {"seconds": 3, "rounds": 3, "repeats": 9}),
    "compare": ({"plan": [(0.1, 10), (1.0, 5), (10.0, 3)]},
                {"plan": [(0.1, 180), (1.0, 45), (10.0, 15)]}),  # 18, 45, 150 changes
    "compare_indexed": ({"plan": [(0.1, 10), (1.0, 5), (10.0, 3)]},
                        {"plan": [(0.1, 180), (1.0, 45), (10.0, 15)]}),
    "channels": ({"plan": [(1.0, 4), (10.0, 15)]}, {"plan": [(1.0, 20), (10.0, 100)]}),
}

# Scenarios that run only when named in --only: what-ifs, not targets.
ON_REQUEST = {"compare_indexed"}


def run_scenario(name: str, pg: Cluster, settings: dict[str, Any]) -> dict[str, Any]:
    """One scenario, by name, on the shared cluster."""
    if name == "latency_idle":
        url = pg.create_database("bench_latency_idle")
        return delivery.run_latency(url, subscribers=1, events=settings["events"], rate=None,
                                    gap=0.02)
    if name == "latency_loaded":
        url = pg.create_database("bench_latency_loaded")
        return delivery.run_latency(url, subscribers=100, events=settings["events"], rate=100)
    if name == "fanout_1k":
        url = pg.create_database("bench_fanout")
        return delivery.run_fanout(url, subscribers=1000, events=settings["events"], gap=0.1,
                                   processes=2, source_count=2)
    if name == "fanout_10k":
        url = pg.create_database("bench_fanout")
        return delivery.run_fanout(url, subscribers=10_000, events=settings["events"], gap=0.4,
                                   processes=2, source_count=4)
    if name == "uvloop":
        if not settings:
            return {"skipped": "full run only"}
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return {"skipped": "uvloop is not installed: pip install -e '.[bench]'"}
        url = pg.create_database("bench_uvloop")
        out: dict[str, Any] = {}
        for loop in ("asyncio", "uvloop"):
            use = loop == "uvloop"
            out[loop] = {
                "latency_idle": delivery.run_latency(url, subscribers=1, events=300, rate=None,
                                                     gap=0.02, uvloop=use),
                "fanout_1k": delivery.run_fanout(url, subscribers=1000,
                                                 events=settings["events"], gap=0.1,
                                                 processes=2, source_count=2, uvloop=use)}
        return out
    if name == "latency_parts":
        return parts.latency_parts(pg.create_database("bench_parts"), **settings)
    if name == "ingest":
        return writers.ingest(pg, seconds=settings["seconds"])
    if name == "idle":
        url = pg.create_database("bench_idle")
        out = {"15k": idle.idle(url, connections=15_000, processes=4, sources=4)}
        if settings["breakdown"]:
            out["traced_2k"] = idle.idle(url, connections=2000, processes=2, sources=2,
                                         memory_report=pg.root / "memory.json")
            out["deflate_2k"] = idle.idle(url, connections=2000, processes=2, sources=2,
                                          deflate=True)
            out["plain_2k"] = idle.idle(url, connections=2000, processes=2, sources=2)
        return out
    if name == "writer_cost":
        return writers.writer_cost(pg, seconds=settings["seconds"], rounds=settings["rounds"],
                                   variants=settings["variants"])
    if name == "writer_latency":
        return writers.writer_latency(pg, seconds=settings["seconds"], subscribers=1000)
    if name == "breakdown":
        if not settings:
            return {"skipped": "full run only"}
        return writers.breakdown(pg, **settings)
    if name == "bulk":
        return writers.bulk(pg, repeats=settings["repeats"])
    if name == "compare":
        return compare.compare(pg, settings["plan"])
    if name == "compare_indexed":
        return compare.compare(pg, settings["plan"], owner_index=True)
    if name == "channels":
        return peer.peer(pg, subscribers=1000, plan=settings["plan"])
    raise ValueError(f"unknown scenario {name!r}")


def _raise_file_limit() -> None:
    """15,000 sockets need the hard limit (20,000 here), not the usual soft 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller runs of every scenario (under two minutes)")
    parser.add_argument("--only", default="",
                        help="comma-separated scenarios to run: " + ", ".join(PLANS)
                        + f" ({', '.join(sorted(ON_REQUEST))} only when named)")
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="directory for latest.json and the plots (default bench/results)")
    parser.add_argument("--no-markdown", action="store_true",
                        help="do not rewrite bench/RESULTS.md")
    args = parser.parse_args(argv)
    names = ([n.strip() for n in args.only.split(",") if n.strip()]
             or [n for n in PLANS if n not in ON_REQUEST])
    unknown = [n for n in names if n not in PLANS]
    if unknown:
        parser.error(f"unknown scenario {unknown[0]!r}: choose from {', '.join(PLANS)}")
    _raise_file_limit()
    # SIGTERM unwinds like an error: every daemon, load generator and the cluster stop.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    command = "python -m bench" + (" --quick" if args.quick else "") + (
        f" --only {','.join(names)}" if args.only else "")
    results: dict[str, Any] = {"command": command, "mode": "quick" if args.quick else "full",
                               "machine": machine(), "scenarios": {}, "seconds": {}}
    started = time.monotonic()
    with cluster() as pg:
        results["postgresql"] = pg.settings()
        for name in names:
            settings = PLANS[name][0 if args.quick else 1]
            print(f"-- {name} ...", flush=True)
            t0 = time.monotonic()
            load_before = os.getloadavg()[0]
            try:
                results["scenarios"][name] = run_scenario(name, pg, settings)
            except Exception as exc:  # one broken scenario must not lose the others
                traceback.print_exc()
                results["scenarios"][name] = {"error": f"{type(exc).__name__}: {exc}"}
            results["seconds"][name] = round(time.monotonic() - t0, 1)
            # Other work on this shared machine shows up here (1-minute load averages).
            results.setdefault("loadavg", {})[name] = [round(load_before, 2),
                                                       round(os.getloadavg()[0], 2)]
            print(f"   {name}: {results['seconds'][name]} s", flush=True)
    results["total_seconds"] = round(time.monotonic() - started, 1)
    table = report.targets(results)
    results["targets"] = table
    print()
    print(report.text_table(table))
    print(f"\ntotal {results['total_seconds']} s")
    args.out.mkdir(parents=True, exist_ok=True)
    dump(args.out / "latest.json", results)
    report.plots(results, args.out)
    if not args.no_markdown:
        report.write_markdown(results, Path(__file__).resolve().parent / "RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
