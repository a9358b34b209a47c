"""Scenario 7: against what users have today, 100 tabs at 0.1, 1 and 10 changes/s.

The designs run side by side on one stream of changes (random arrival
times, exactly rate x duration of them, one committed UPDATE each), each
with its own 100 tabs in two processes of its own (bench/tabs.py):
(a) AJAX polling every second, (b) the original design (bench/original.py),
(c) the bridge's legacy `/` with the original snippet, (d) the bridge's /v1
with bridge.js refetchOn(), (e) a live region on /v1 (subscribes from its
render position, refetches through the same bucket). (c), (d) and (e) share
one daemon, whose queries each is charged with in full; all three throttle
with a token bucket (burst 3, one token per second): the daemon's
--legacy-burst/--legacy-window defaults, and bridge.js's
{minInterval: 1000, burst: 3}.

Staleness: from a change's commit to each tab's first refetch after it,
taken when the tab asks (`staleness`) and when its query starts on one of
the pooled connections that stand in for Django's workers (`query_staleness`:
a burst of 100 tabs queues there).

Steady state: the stream starts WARMUP seconds before the measured window,
at the same rate, so no design is measured on its start-up (a tab's first
load, or a token bucket's savings from the idle seconds after connecting,
which polling would have spent on queries before the window).

Queries: every refetch is one query, counted exactly by the tabs; the
original server counts its sync-loop queries; the daemon's sessions run with
log_statement=all (PGOPTIONS, its sessions only), and its statements logged
inside the measured window are counted from the server log.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import re
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import psycopg

from .env import ROOT, SECRET, Cluster, Daemon, free_port
from .stats import summary_ms

DESIGNS = {
    "a_polling": "AJAX polling of /task-list every second",
    "b_original": "original design: 0.5 s sync loop, `updated` to all",
    "c_legacy": "bridge, legacy `/` + the original snippet (token bucket: burst 3, 1 token/s)",
    "d_refetchon": "bridge, /v1 + bridge.js refetchOn (minInterval 1 s, burst 3)",
    "e_region": "bridge, /v1 + a {% live %} region (render position, same bucket)",
}
TABS = 100
PROCESSES = 2  # per design: a tab's reaction is not queued behind 99 others in one loop
TAIL = 2.5
WARMUP = 5.0  # seconds of the same stream before the measured window: steady state, not start-up


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) UTC \[\d+\] LOG:  "
                       r"(?:statement|execute [^:]*):")


def _logged_statements(pg: Cluster, since: float, until: float) -> int:
    """Statements the server logged between two wall-clock times (only the daemon logs any)."""
    count = 0
    for line in (pg.datadir / "devdb.log").read_text(errors="replace").splitlines():
        match = _LOG_LINE.match(line)
        if match:
            when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(
                tzinfo=timezone.utc).timestamp()
            count += since <= when < until
    return count


class _Proc:
    def __init__(self, args: list[str]):
        # The daemon's key in the environment (never on a command line): region tabs
        # encode their render position with it, as Django does.
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, "BRIDGE_SECRET_KEY": SECRET})

    def line(self) -> Any:
        assert self.proc.stdout is not None
        text = self.proc.stdout.readline()
        if not text:
            raise RuntimeError(f"{self.proc.args[2]} exited ({self.proc.wait()})")
        return json.loads(text)

    def send(self, cmd: str) -> Any:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd}) + "\n")
        self.proc.stdin.flush()
        return self.line()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(20)
            except (OSError, RuntimeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


def run_rate(pg: Cluster, rate: float, duration: float, seed: int) -> dict[str, Any]:
    db = f"bench_compare_{str(rate).replace('.', '_')}"
    url = pg.create_database(db)
    daemon = Daemon(url, env={"PGOPTIONS": "-c log_statement=all"}).start()
    original_port = free_port()
    original = subprocess.Popen([sys.executable, "-m", "bench.original", "--database-url", url,
                                 "--port", str(original_port)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True)
    assert original.stdout is not None
    original.stdout.readline()  # "ready"
    targets = {
        "a_polling": {"design": "polling"},
        "b_original": {"design": "updated", "url": f"ws://127.0.0.1:{original_port}/"},
        "c_legacy": {"design": "updated", "url": f"ws://127.0.0.1:{daemon.port}/"},
        "d_refetchon": {"design": "refetchon", "url": f"ws://127.0.0.1:{daemon.port}/v1",
                        "min_interval": 1.0, "burst": 3},
        "e_region": {"design": "region", "url": f"ws://127.0.0.1:{daemon.port}/v1",
                     "min_interval": 1.0, "burst": 3},
    }
    tabs = {(name, part): _Proc([sys.executable, "-m", "bench.tabs", json.dumps(
        {**cfg, "tabs": TABS // PROCESSES, "first": part * (TABS // PROCESSES),
         "database_url": url, "seed": seed + 10 * i + part})])
        for i, (name, cfg) in enumerate(targets.items()) for part in range(PROCESSES)}
    writes = 0
    try:
        ready: dict[str, int] = {}
        for (name, _), proc in tabs.items():
            ready[name] = ready.get(name, 0) + proc.line()["ready"]
        time.sleep(1.5)  # let the connect storm of the original design settle
        # Random arrivals at exactly the nominal rate: a Poisson process given its count.
        rng = random.Random(seed)
        warmup = sorted(rng.uniform(-WARMUP, 0) for _ in range(round(rate * WARMUP)))
        offsets = sorted(rng.uniform(0, duration) for _ in range(round(rate * duration)))
        commits: list[float] = []
        with psycopg.connect(url, autocommit=True) as writer:
            started = time.monotonic() + WARMUP
            wall_started = time.time() + WARMUP
            for offset in [*warmup, *offsets]:
                pause = started + offset - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                writer.execute("UPDATE example_task SET done = NOT done WHERE id = %s",
                               (rng.randint(1, 10_000),), prepare=True)
                if offset >= 0:
                    commits.append(time.monotonic())
                writes += 1
            ended = started + duration
            time.sleep(max(0.0, ended + TAIL - time.monotonic()))
        reports: dict[str, dict[str, Any]] = {}
        for (name, _), proc in tabs.items():
            part = proc.send("report")
            merged = reports.setdefault(name, {"issued": [], "starts": [], "queries": 0,
                                               "resyncs": 0})
            merged["issued"] += part["issued"]
            merged["starts"] += part["starts"]
            merged["queries"] += part["queries"]
            merged["resyncs"] += part.get("resyncs", 0)
    finally:
        for proc in tabs.values():
            proc.stop()
        original.terminate()
        out, _ = original.communicate(timeout=20)
        daemon.stop()
    original_queries, original_seconds = out.split()[-2:]
    original_rate = int(original_queries) / float(original_seconds)
    daemon_queries = _logged_statements(pg, wall_started, wall_started + duration)
    results: dict[str, Any] = {}
    for name, report in reports.items():
        server = {"b_original": original_rate, "c_legacy": daemon_queries / duration,
                  "d_refetchon": daemon_queries / duration,
                  "e_region": daemon_queries / duration}.get(name, 0.0)
        issued = [sorted(s) for s in report["issued"]]
        in_window = sum(started <= t < ended for s in issued for t in s)
        results[name] = {
            "tabs_ready": ready[name],
            "resyncs": report["resyncs"],
            "refetches_per_s": round(in_window / duration, 2),
            "server_queries_per_s": round(server, 2),
            "queries_per_s": round(in_window / duration + server, 2),
            **_staleness(commits, issued, "staleness"),
            **_staleness(commits, [sorted(s) for s in report["starts"]], "query_staleness"),
        }
    return {"rate": rate, "duration_s": duration, "changes": len(commits), "designs": results,
            "writes": writes, "daemon_queries_in_window": daemon_queries,
            "original_queries_per_s": round(original_rate, 2)}


def _staleness(commits: list[float], times: list[list[float]], name: str) -> dict[str, Any]:
    """For each change and tab: from the commit to the first refetch after it."""
    stale: list[float] = []
    missed = 0
    for t_c in commits:
        for tab in times:
            i = bisect.bisect_left(tab, t_c)
            if i < len(tab):
                stale.append(tab[i] - t_c)
            else:
                missed += 1
    return {f"{name}_ms": summary_ms(stale), f"{name}_missed": missed,
            f"{name}_samples_ms": [round(x * 1000, 1) for x in stale[:5000]]}


def compare(pg: Cluster, plan: list[tuple[float, float]], seed: int = 7) -> dict[str, Any]:
    """Run every (changes/s, seconds) of the plan; targets are judged in the report."""
    return {"tabs": TABS, "designs": DESIGNS,
            "rates": [run_rate(pg, rate, duration, seed) for rate, duration in plan]}
