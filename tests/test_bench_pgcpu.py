"""bench/pgcpu.py: per-backend PostgreSQL CPU over a window, and scenario 7's charges.

The arithmetic is plain functions tested on made-up snapshots; one test
reads a real cluster, with backends that work, start and end between two
readings.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from bench import compare, pgcpu
from bench.pgcpu import Backend, Snapshot
from tests.fix_db import PgServer
from tests.timing import wait_for


def _b(pid: int, cpu_ns: int, application: str = "app", database: str = "db",
       kind: str = "client backend") -> Backend:
    return Backend(pid, database, application, kind, cpu_ns)


def test_parse_schedstat_takes_on_cpu_nanoseconds() -> None:
    """The first of schedstat's three fields is the on-CPU time in ns."""
    assert pgcpu.parse_schedstat("701178 3500 2\n") == 701178


def test_parse_stat_counts_fields_after_the_last_parenthesis() -> None:
    """A process title with spaces and ')' does not shift the fields."""
    fields = ["S", "77", "1", "1", "0", "-1", "4194560", "10", "0", "0", "0", "5", "6",
              "300", "40", "20", "0", "1", "0"]
    line = "123 (postgres: a) b (c)) " + " ".join(fields)
    assert pgcpu.parse_stat(line) == (77, 340)


def test_window_charges_survivors_their_difference_and_newcomers_whole() -> None:
    """Alive at both readings: the difference; started inside: all of it."""
    start = Snapshot(10.0, {1: _b(1, 1_000), 2: _b(2, 5_000)}, 0)
    end = Snapshot(12.5, {1: _b(1, 4_000), 2: _b(2, 5_000), 3: _b(3, 700)}, 0)
    win = pgcpu.window(start, end)
    assert win.seconds == 2.5
    assert win.spent_ns == {1: 3_000, 2: 0, 3: 700}
    assert win.started == [3]
    assert win.ended == []
    assert win.exited_ns == 0


def test_window_reports_ended_backends_and_what_exited_children_spent_inside() -> None:
    """An ended backend is listed; reaped CPU minus its CPU at the start is in exited_ns."""
    tick = pgcpu.TICK_NS
    start = Snapshot(0.0, {1: _b(1, 2 * tick), 2: _b(2, 0)}, 5 * tick)
    end = Snapshot(1.0, {2: _b(2, 100)}, 12 * tick)  # pid 1 reaped with 7 ticks in all
    win = pgcpu.window(start, end)
    assert win.ended == [1]
    assert win.exited_ns == 5 * tick
    assert 1 not in win.spent_ns
    assert win.backends[1].application == "app"


def test_window_never_reports_negative_exited_cpu() -> None:
    """The postmaster's counters are in ticks: a rounding below zero is clamped to zero."""
    start = Snapshot(0.0, {1: _b(1, 3_000_000)}, 0)
    end = Snapshot(1.0, {}, 0)
    assert pgcpu.window(start, end).exited_ns == 0


def test_window_keeps_the_name_a_backend_had_when_the_last_reading_missed_it() -> None:
    """A pid that pg_stat_activity did not list at the end keeps its name from the start."""
    start = Snapshot(0.0, {1: _b(1, 0, "bench-writer")}, 0)
    end = Snapshot(1.0, {1: Backend(1, "", "", "", 50)}, 0)
    win = pgcpu.window(start, end)
    assert win.backends[1].application == "bench-writer"
    assert win.spent_ns[1] == 50


def test_group_and_charge_sum_groups_add_extras_and_flag_lost_backends() -> None:
    """A design is the sum of its groups; one whose backend ended is not complete."""
    start = Snapshot(0.0, {1: _b(1, 0, "tabs"), 2: _b(2, 0, "daemon"), 3: _b(3, 0, "poll"),
                           4: _b(4, 0, "poll")}, 0)
    end = Snapshot(1.0, {1: _b(1, 4_000_000, "tabs"), 2: _b(2, 1_000_000, "daemon"),
                         3: _b(3, 9_000_000, "poll"), 5: _b(5, 2_000_000, "tabs")}, 0)
    groups = pgcpu.group(pgcpu.window(start, end), lambda b: b.application)
    assert groups.ms == {"tabs": 6.0, "daemon": 1.0, "poll": 9.0}
    assert groups.started == {"tabs": ["tabs (pid 5)"]}
    assert groups.ended == {"poll": ["poll (pid 4)"]}
    charged = pgcpu.charge(groups, {"bridge": ["tabs", "daemon", "triggers"], "polling": ["poll"]},
                           {"triggers": 0.5})
    assert charged["bridge"].ms == 7.5
    assert charged["bridge"].parts_ms == {"tabs": 6.0, "daemon": 1.0, "triggers": 0.5}
    assert charged["bridge"].complete
    assert not charged["polling"].complete
    assert charged["polling"].ended_in_window == ["poll (pid 4)"]


def test_paired_writes_charge_the_difference() -> None:
    """The trigger's cost is with minus without, summed; means per write beside it."""
    out = pgcpu.paired_writes([(500_000, 300_000), (700_000, 300_000)])
    assert out == {"writes": 2, "added_ms": 0.6, "with_us": 600.0, "without_us": 300.0}
    assert pgcpu.paired_writes([]) == {"writes": 0, "added_ms": 0.0, "with_us": 0.0,
                                       "without_us": 0.0}


def test_process_title_strips_the_prefix_and_the_padding() -> None:
    """PostgreSQL overwrites argv: the title is the first NUL-terminated string."""
    assert pgcpu.process_title(b"postgres: autovacuum worker bench\0\0\0") == \
        "autovacuum worker bench"
    assert pgcpu.process_title(b"/usr/bin/postgres\0-D\0/data\0") == "/usr/bin/postgres"


def test_transients_keep_only_processes_neither_reading_saw() -> None:
    """A process the Watcher sampled that a reading also saw is not a transient."""
    start = Snapshot(0.0, {1: _b(1, 0)}, 0)
    end = Snapshot(1.0, {1: _b(1, 0), 2: _b(2, 0)}, 0)
    seen = {1: ("a", 5), 2: ("b", 5), 3: ("autovacuum worker db", 2_000_000),
            4: ("autovacuum worker db", 500_000)}
    assert pgcpu.transients(seen, start, end) == {
        "autovacuum worker db": {"count": 2, "cpu_ms": 2.5}}


def test_compare_charges_every_bridge_design_with_the_whole_daemon_and_the_trigger() -> None:
    """Each bridge design carries the daemon and the trigger; polling only its tabs."""
    for name in compare.BRIDGE_DESIGNS:
        assert set(compare.CHARGES[name]) == {f"tabs {name}", "daemon", "triggers"}
    assert compare.CHARGES["a_polling"] == ["tabs a_polling"]
    assert set(compare.CHARGES["b_original"]) == {"original", "tabs b_original"}


def test_median_gap_tells_a_burst_from_a_spread() -> None:
    """Back-to-back starts give a small median gap, whatever their order; one start gives none."""
    assert compare.median_gap_ms([0.0, 0.001, 0.002, 1.0, 1.001, 1.002]) == 1.0
    assert compare.median_gap_ms([0.03, 0.0, 0.01, 0.02]) == 10.0
    assert compare.median_gap_ms([5.0]) is None


def test_compare_classifies_backends_by_database_and_application_name() -> None:
    """Names map to groups; other databases are background; unnamed backends are 'other'."""
    classify = compare._classify("bench_db")
    assert classify(_b(1, 0, "pg_notify_bridge host:8765", "bench_db")) == "daemon"
    assert classify(_b(1, 0, compare.WRITER_APP, "bench_db")) == "writer"
    assert classify(_b(1, 0, compare.ORIGINAL_APP, "bench_db")) == "original"
    assert classify(_b(1, 0, compare.TABS_APP + "e_region", "bench_db")) == "tabs e_region"
    assert classify(_b(1, 0, compare.METER_APP, "postgres")) == "harness"
    assert classify(_b(1, 0, "", "bench_db", "autovacuum worker")) == "other in the database"
    assert classify(_b(1, 0, "", "", "checkpointer")) == "cluster background"


async def test_read_sees_work_newcomers_and_leavers_on_a_real_cluster(
        pg_server: PgServer, db_url: str) -> None:
    """Two readings around real backends: work shows as CPU, start and end are reported.

    One backend lives only between the readings: the Watcher names it.
    """
    if pg_server.datadir is None:
        pytest.skip("reads /proc of an embedded server (DATABASE_URL is someone else's)")
    datadir = Path(pg_server.datadir)
    dbname = psycopg.conninfo.conninfo_to_dict(db_url)["dbname"]
    with psycopg.connect(pg_server.url, autocommit=True, application_name="meter") as meter, \
            psycopg.connect(db_url, autocommit=True, application_name="worker") as worker:
        leaver = psycopg.connect(db_url, autocommit=True, application_name="leaver")
        leaver_pid, worker_pid = leaver.info.backend_pid, worker.info.backend_pid
        first = pgcpu.read(meter, datadir)
        worker.execute("SELECT count(*) FROM generate_series(1, 300000)").fetchone()
        leaver.close()
        await wait_for(lambda: not Path(f"/proc/{leaver_pid}").exists(), what="leaver gone")
        watcher = pgcpu.Watcher(datadir, interval=0.01).start()
        with psycopg.connect(db_url, autocommit=True, application_name="short") as short:
            short_pid = short.info.backend_pid
            short.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone()
            await wait_for(lambda: short_pid in watcher.seen, what="the watcher sees it")
        await wait_for(lambda: not Path(f"/proc/{short_pid}").exists(), what="short gone")
        with psycopg.connect(db_url, autocommit=True, application_name="newcomer") as newcomer:
            newcomer.execute("SELECT count(*) FROM generate_series(1, 1000)").fetchone()
            last = pgcpu.read(meter, datadir)
            newcomer_pid = newcomer.info.backend_pid
        win = pgcpu.window(first, last)
        seen = watcher.stop()
    assert win.backends[worker_pid].application == "worker"
    assert win.backends[worker_pid].database == dbname
    assert win.spent_ns[worker_pid] > 0
    assert win.ended == [leaver_pid]
    assert win.backends[leaver_pid].application == "leaver"
    assert newcomer_pid in win.started
    assert win.spent_ns[newcomer_pid] == last.backends[newcomer_pid].cpu_ns > 0
    groups = pgcpu.group(win, lambda b: b.application)
    assert groups.ended == {"leaver": [f"leaver (pid {leaver_pid})"]}
    assert short_pid not in win.backends  # started and ended between the readings:
    short_title = seen[short_pid][0]  # only the Watcher knows it
    assert dbname in short_title
    assert pgcpu.transients(seen, first, last)[short_title]["count"] >= 1
