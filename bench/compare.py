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
a burst of 100 tabs queues there). A change's time is when the writer SENT
its autocommit UPDATE, not when the answer came back: PostgreSQL wakes the
daemon's LISTEN before it answers the writer, and on this 2-core machine the
writer is woken after the daemon and tabs it just woke, so a tab could ask
before the writer read its clock (the first tab served then had its refetch
counted against the next change, 13 s later, in 8f55100's run). From the
send, no reaction can come first; staleness is then an upper bound by the
writer's round trip, reported as `writer_rtt_ms`. `received_staleness` is
from the same time to the frame that asks for a refetch (`event`, `resync`
or `updated`) arriving at the tab, and `frames_received` the count of those
between two reads of the daemon's bridge_frames_sent_total (the window plus
TAIL), against the difference of the two (`daemon_frames_sent`; a frame in
flight during a read can still be counted on one side only).

Steady state: the stream starts WARMUP seconds before the measured window,
at the same rate, so no design is measured on its start-up (a tab's first
load, or a token bucket's savings from the idle seconds after connecting,
which polling would have spent on queries before the window).

Queries: every refetch is one query, counted exactly by the tabs; the
original server counts its sync-loop queries; the daemon's sessions run with
log_statement=all (PGOPTIONS, its sessions only), and its statements logged
inside the measured window are counted from the server log.

PostgreSQL CPU (issue 14): every process that connects names itself
(application_name: each design's tabs, the original server, the writer; the
daemon's sessions are "pg_notify_bridge ..."), and bench/pgcpu.py reads every
backend's on-CPU time at the start and the end of the window. Each design is
charged with the backends that serve it: polling its tabs; the original
design its server and its tabs; each bridge design its tabs, every session
of the daemon (shared by c, d and e, so each is charged in full, as with
queries) and what the capture trigger adds to the writer's transactions.
That last part is measured in the stream itself: after (or before, at
random) each committed UPDATE of example_task, the writer makes the same
UPDATE of example_task_plain, an identical table without triggers, and the
writer backend's on-CPU time is read around each of the two; the trigger's
cost is the sum of the differences over the window's writes. The plain
UPDATEs are the application's own work, which every design pays alike, and
are charged to none. The daemon's log_statement=all (for the query counts)
costs its backends a little more than in production: an upper bound.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg

from bridge import install
from bridge.listener import APPLICATION_NAME as DAEMON_APP

from . import pgcpu
from .env import ROOT, SECRET, TABLE, Cluster, Daemon, free_port
from .stats import summary_ms

DESIGNS = {
    "a_polling": "AJAX polling of /task-list every second",
    "b_original": "original design: 0.5 s sync loop, `updated` to all",
    "c_legacy": "bridge, legacy `/` + the original snippet (token bucket: burst 3, 1 token/s)",
    "d_refetchon": "bridge, /v1 + bridge.js refetchOn (minInterval 1 s, burst 3)",
    "e_region": "bridge, /v1 + a {% live %} region (render position, same bucket)",
    "f_own": "bridge, /v1 + refetchOn of the tab's own rows, as the example app subscribes"
             " (channel column owner_id: example_task:owner_id=<user>, same bucket)",
}
TABS = 100
PROCESSES = 2  # per design: a tab's reaction is not queued behind 99 others in one loop
TAIL = 2.5
WARMUP = 5.0  # seconds of the same stream before the measured window: steady state, not start-up

# application_name of each process that connects, so its backends can be charged (pgcpu.py).
WRITER_APP = "bench-writer"
ORIGINAL_APP = "bench-original"
METER_APP = "bench-cpu-meter"
TABS_APP = "bench-tabs "  # + the design's name
PLAIN_TABLE = "example_task_plain"  # example_task without triggers: the writer's paired write
UPDATES = {
    "example_task": "UPDATE example_task SET done = NOT done WHERE id = %s",
    PLAIN_TABLE: "UPDATE example_task_plain SET done = NOT done WHERE id = %s",
}
# What each design is charged with: groups of backends (see _classify), and
# "triggers", the capture trigger's cost in the writer's transactions.
CHARGES = {
    "a_polling": ["tabs a_polling"],
    "b_original": ["original", "tabs b_original"],
    "c_legacy": ["tabs c_legacy", "daemon", "triggers"],
    "d_refetchon": ["tabs d_refetchon", "daemon", "triggers"],
    "e_region": ["tabs e_region", "daemon", "triggers"],
    "f_own": ["tabs f_own", "daemon", "triggers"],
}
BRIDGE_DESIGNS = ("c_legacy", "d_refetchon", "e_region", "f_own")


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


def _classify(database: str) -> Callable[[pgcpu.Backend], str]:
    """The group of a backend (see CHARGES) from its database and application_name."""
    def classify(b: pgcpu.Backend) -> str:
        if b.application == METER_APP:
            return "harness"
        if b.database != database:
            return "cluster background"  # checkpointer, WAL writer, logger, I/O workers...
        if b.application.startswith(DAEMON_APP):
            return "daemon"
        if b.application == WRITER_APP:
            return "writer"
        if b.application == ORIGINAL_APP:
            return "original"
        if b.application.startswith(TABS_APP):
            return "tabs " + b.application.removeprefix(TABS_APP)
        return "other in the database"  # autovacuum workers, anything unnamed
    return classify


class _Proc:
    def __init__(self, args: list[str], application_name: str):
        # The daemon's key in the environment (never on a command line): region tabs
        # encode their render position with it, as Django does. PGAPPNAME names
        # every connection the process opens (libpq reads it).
        self.proc = subprocess.Popen(args, cwd=ROOT, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1,
                                     env={**os.environ, "BRIDGE_SECRET_KEY": SECRET,
                                          "PGAPPNAME": application_name})

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


def run_rate(pg: Cluster, rate: float, duration: float, seed: int,
             owner_index: bool = False) -> dict[str, Any]:
    db = f"bench_compare_{str(rate).replace('.', '_')}" + ("_indexed" if owner_index else "")
    url = pg.create_database(db)
    with psycopg.connect(url, autocommit=True) as conn:
        # As the example app installs them (BRIDGE["MODELS"]): each change also goes to its
        # owner's row channel, which f_own's tabs subscribe to; the others take the table's.
        install.install(conn, TABLE, channel_column="owner_id")
        if owner_index:  # what Django makes for a ForeignKey: the tabs' query stops scanning
            conn.execute("CREATE INDEX ON example_task (owner_id)")
            conn.execute("ANALYZE example_task")
        conn.execute("CREATE TABLE example_task_plain (LIKE example_task INCLUDING ALL)")
        conn.execute("INSERT INTO example_task_plain SELECT * FROM example_task")
        conn.execute("VACUUM ANALYZE example_task_plain")
    daemon = Daemon(url, env={"PGOPTIONS": "-c log_statement=all"}).start()
    original_port = free_port()
    original = subprocess.Popen([sys.executable, "-m", "bench.original", "--database-url", url,
                                 "--port", str(original_port)], cwd=ROOT,
                                stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PGAPPNAME": ORIGINAL_APP})
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
        "f_own": {"design": "refetchon", "url": f"ws://127.0.0.1:{daemon.port}/v1",
                  "min_interval": 1.0, "burst": 3, "own_rows": True},
    }
    tabs = {(name, part): _Proc([sys.executable, "-m", "bench.tabs", json.dumps(
        {**cfg, "tabs": TABS // PROCESSES, "first": part * (TABS // PROCESSES),
         "database_url": url, "seed": seed + 10 * i + part})], TABS_APP + name)
        for i, (name, cfg) in enumerate(targets.items()) for part in range(PROCESSES)}
    watcher = pgcpu.Watcher(pg.datadir)  # names what starts and ends inside the window
    try:
        ready: dict[str, int] = {}
        for (name, _), proc in tabs.items():
            ready[name] = ready.get(name, 0) + proc.line()["ready"]
        time.sleep(1.5)  # let the connect storm of the original design settle
        # Random arrivals at exactly the nominal rate: a Poisson process given its count.
        rng = random.Random(seed)
        warmup = sorted(rng.uniform(-WARMUP, 0) for _ in range(round(rate * WARMUP)))
        offsets = sorted(rng.uniform(0, duration) for _ in range(round(rate * duration)))
        commits: list[float] = []  # when the writer sent each change's UPDATE
        returned: list[float] = []  # when its answer (COMMIT done) was read
        owners: list[int] = []  # whose task each change was (tab i shows owner i % 100's)
        pairs: list[tuple[int, int]] = []  # writer CPU ns per write: (with triggers, without)
        order = random.Random(seed + 1)  # which of the pair goes first (the stream's rng untouched)
        with psycopg.connect(url, autocommit=True, application_name=WRITER_APP) as writer, \
                psycopg.connect(pg.url, autocommit=True, application_name=METER_APP) as meter:
            schedstat = Path(f"/proc/{writer.info.backend_pid}/schedstat")
            for table in UPDATES:  # compile the trigger and prepare both: session set-up, not
                with writer.transaction(force_rollback=True):  # a write's cost (no event)
                    writer.execute(UPDATES[table], (1,), prepare=True)
            started = time.monotonic() + WARMUP
            wall_started = time.time() + WARMUP
            ended = started + duration

            def write(offset: float, measured: bool) -> None:
                """One change at `offset`, paired with the same UPDATE of the plain copy."""
                pause = started + offset - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                task = rng.randint(1, 10_000)
                tables = list(UPDATES)
                if order.random() < 0.5:
                    tables.reverse()
                spent: dict[str, int] = {}
                for table in tables:
                    before = pgcpu.parse_schedstat(schedstat.read_text())
                    sent = time.monotonic()
                    writer.execute(UPDATES[table], (task,), prepare=True)
                    back = time.monotonic()
                    spent[table] = pgcpu.parse_schedstat(schedstat.read_text()) - before
                    if table == "example_task" and measured:
                        commits.append(sent)
                        returned.append(back)
                        owners.append(task % 100)
                if measured:
                    pairs.append((spent["example_task"], spent[PLAIN_TABLE]))

            for offset in warmup:
                write(offset, measured=False)
            time.sleep(max(0.0, started - time.monotonic()))  # the window opens
            sent_before = _frames_sent(daemon)
            counted_from = time.monotonic()
            first = pgcpu.read(meter, pg.datadir)
            watcher.start()
            for offset in offsets:
                write(offset, measured=True)
            writes = len(warmup) + len(offsets)
            time.sleep(max(0.0, ended - time.monotonic()))
            last = pgcpu.read(meter, pg.datadir)
            seen = watcher.stop()
            time.sleep(max(0.0, ended + TAIL - time.monotonic()))
            counted_until = time.monotonic()
            sent_after = _frames_sent(daemon)
        reports: dict[str, dict[str, Any]] = {}
        for (name, _), proc in tabs.items():
            part = proc.send("report")
            merged = reports.setdefault(name, {"issued": [], "starts": [], "received": [],
                                               "queries": 0, "resyncs": 0})
            merged["issued"] += part["issued"]
            merged["starts"] += part["starts"]
            merged["received"] += part["received"]
            merged["queries"] += part["queries"]
            merged["resyncs"] += part.get("resyncs", 0)
    finally:
        watcher.stop()
        for proc in tabs.values():
            proc.stop()
        original.terminate()
        out, _ = original.communicate(timeout=20)
        daemon.stop()
    original_queries, original_seconds = out.split()[-2:]
    original_rate = int(original_queries) / float(original_seconds)
    daemon_queries = _logged_statements(pg, wall_started, wall_started + duration)
    cpu = _pg_cpu(pgcpu.window(first, last), db, pairs, len(commits), reports,
                  original_rate, started, ended)
    cpu["exited_seen"] = pgcpu.transients(seen, first, last)
    results: dict[str, Any] = {}
    for name, report in reports.items():
        server = {"b_original": original_rate, "c_legacy": daemon_queries / duration,
                  "d_refetchon": daemon_queries / duration,
                  "e_region": daemon_queries / duration,
                  "f_own": daemon_queries / duration}.get(name, 0.0)
        issued = [sorted(s) for s in report["issued"]]
        # Whose refetch a change is waited for: every tab's, or on own rows its owner's tabs.
        concerned = owners if targets[name].get("own_rows") else None
        in_window = sum(started <= t < ended for s in issued for t in s)
        results[name] = {
            "tabs_ready": ready[name],
            "resyncs": report["resyncs"],
            "refetches_per_s": round(in_window / duration, 2),
            "server_queries_per_s": round(server, 2),
            "queries_per_s": round(in_window / duration + server, 2),
            **_staleness(commits, issued, "staleness", concerned),
            **_staleness(commits, [sorted(s) for s in report["starts"]], "query_staleness",
                         concerned),
            **_staleness(commits, [sorted(s) for s in report["received"]],
                         "received_staleness", concerned),
            "asked_before_answer": _before(commits, returned, issued, concerned),
            "frames_received": sum(counted_from <= t < counted_until
                                   for s in report["received"] for t in s),
            **cpu["designs"][name],
        }
    return {"rate": rate, "duration_s": duration, "changes": len(commits), "designs": results,
            "writer_rtt_ms": summary_ms([b - a for a, b in zip(commits, returned, strict=True)]),
            "daemon_frames_sent": {k: sent_after.get(k, 0) - sent_before.get(k, 0)
                                   for k in sent_after},
            "writes": writes, "daemon_queries_in_window": daemon_queries,
            "original_queries_per_s": round(original_rate, 2),
            "pg_cpu": {k: v for k, v in cpu.items() if k != "designs"}}


def _concerned(times: list[list[float]], owners: list[int] | None, n: int) -> list[list[float]]:
    """The tabs change `n` concerns: every tab, or with `owners` those showing its owner's
    tasks (tab i shows owner i % 100's)."""
    return times if owners is None else times[owners[n] % 100::100]


def _before(sent: list[float], returned: list[float], times: list[list[float]],
            owners: list[int] | None = None) -> int:
    """How many (change, tab) reactions came before the writer had read its COMMIT's answer.

    Each of these would have been missed (counted against the next change) had a
    change's time been taken when the answer came back, as before this count existed.
    """
    early = 0
    for n, (t_s, t_r) in enumerate(zip(sent, returned, strict=True)):
        for tab in _concerned(times, owners, n):
            i = bisect.bisect_left(tab, t_s)
            early += i < len(tab) and tab[i] < t_r
    return early


def _frames_sent(daemon: Daemon) -> dict[str, int]:
    """The daemon's bridge_frames_sent_total per endpoint, from its /metrics."""
    return frames_sent(daemon.metrics())


def frames_sent(metrics: str) -> dict[str, int]:
    """bridge_frames_sent_total per endpoint in a /metrics text."""
    sent: dict[str, int] = {}
    for line in metrics.splitlines():
        match = re.match(r'bridge_frames_sent_total\{endpoint="(\w+)"\} ([0-9.e+]+)$', line)
        if match:
            sent[match.group(1)] = int(float(match.group(2)))
    return sent


def median_gap_ms(starts: list[float]) -> float | None:
    """Median time between one refetch's query start and the next, any tab's (ms).

    Bursts show as gaps far under the mean: 100 tabs that refetch at once
    queue on 4 pooled connections and start back to back, while polling's
    random phases spread them about 10 ms apart. A query on a backend that
    was just busy costs less CPU than one on a backend that sat idle
    (bench.refetch_cost), so this tells why a design's refetches cost what
    they cost.
    """
    ordered = sorted(starts)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    return round(statistics.median(gaps) * 1000, 3) if gaps else None


def _pg_cpu(win: pgcpu.Window, database: str, pairs: list[tuple[int, int]], changes: int,
            reports: dict[str, dict[str, Any]], original_rate: float, started: float,
            ended: float) -> dict[str, Any]:
    """Each design's PostgreSQL CPU over the window, and where the bridge's goes."""
    groups = pgcpu.group(win, _classify(database))
    writer = pgcpu.paired_writes(pairs)
    charged = pgcpu.charge(groups, CHARGES, {"triggers": writer["added_ms"]})
    per_s = 1 / win.seconds
    polling = charged["a_polling"].ms
    designs: dict[str, Any] = {}
    for name, c in charged.items():
        refetches = sum(started <= t < ended for s in reports[name]["starts"] for t in s)
        tabs_ms = groups.ms.get(f"tabs {name}", 0.0)
        designs[name] = {
            "pg_cpu_ms_per_s": round(c.ms * per_s, 3),
            "pg_cpu_parts_ms_per_s": {k: round(v * per_s, 3) for k, v in c.parts_ms.items()},
            "pg_cpu_polling_over_design": round(polling / c.ms, 3) if c.ms else None,
            "pg_cpu_complete": c.complete,
            "pg_cpu_ended_in_window": c.ended_in_window,
            "refetch_us": round(tabs_ms * 1000 / refetches, 1) if refetches else None,
            "refetch_gap_ms_p50": median_gap_ms(
                [t for s in reports[name]["starts"] for t in s if started <= t < ended]),
        }
    daemon_ms = groups.ms.get("daemon", 0.0)
    original_queries = original_rate * win.seconds
    return {
        "designs": designs,
        "window_s": round(win.seconds, 3),
        "groups_ms_per_s": {k: round(v * per_s, 3) for k, v in sorted(groups.ms.items())},
        "started_in_window": groups.started,
        "ended_in_window": groups.ended,
        "exited_in_window_ms": round(win.exited_ns / 1e6, 1),
        "exited_resolution_ms": pgcpu.TICK_NS / 1e6,
        "daemon_ms_per_change": round(daemon_ms / changes, 3) if changes else None,
        "daemon_sessions_ms": {f"{pid}: {b.query}": round(win.spent_ns.get(pid, 0) / 1e6, 2)
                               for pid, b in win.backends.items()
                               if b.application.startswith(DAEMON_APP)},
        "original_us_per_sync_query": (round(groups.ms.get("original", 0.0) * 1000
                                             / original_queries, 1) if original_queries else None),
        "writer": writer,
    }


def _staleness(commits: list[float], times: list[list[float]], name: str,
               owners: list[int] | None = None) -> dict[str, Any]:
    """For each change and tab it concerns: from the commit to the first refetch after it.

    Every tab, or with `owners` (the owner of each change) only the tabs that
    show that owner's tasks (tab i shows owner i % 100's).
    """
    stale: list[float] = []
    missed = 0
    for n, t_c in enumerate(commits):
        for tab in _concerned(times, owners, n):
            i = bisect.bisect_left(tab, t_c)
            if i < len(tab):
                stale.append(tab[i] - t_c)
            else:
                missed += 1
    return {f"{name}_ms": summary_ms(stale), f"{name}_missed": missed,
            f"{name}_samples_ms": [round(x * 1000, 1) for x in stale[:5000]]}


def compare(pg: Cluster, plan: list[tuple[float, float]], seed: int = 7,
            owner_index: bool = False) -> dict[str, Any]:
    """Run every (changes/s, seconds) of the plan; targets are judged in the report.

    `owner_index` adds an index on owner_id, as the example app's model has:
    the tabs' query gets cheaper, so the daemon's fixed cost per change weighs
    more (scenario compare_indexed, a what-if that the report does not judge).
    """
    return {"tabs": TABS, "designs": DESIGNS, "owner_index": owner_index,
            "rates": [run_rate(pg, rate, duration, seed, owner_index)
                      for rate, duration in plan]}
