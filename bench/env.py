"""What every scenario stands on: a PostgreSQL of its own, the daemon as a process, probes.

The cluster is embedded (example/devdb.py) with PostgreSQL's default
durability (fsync on): writer costs are only honest when commits wait for the
disk as they do in production. The daemon runs as `python -m bridge serve`, a
subprocess, so its CPU time and memory are read from /proc/<pid> and nothing
of the harness is counted in them.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from bridge import install
from example import devdb

ROOT = Path(__file__).resolve().parent.parent
TABLE = "public.example_task"
CHANNEL = "example_task"
ROWS = 10_000
SECRET = secrets.token_urlsafe(50)  # per run, passed in the environment: no key ships here
TABLE_DDL = (
    "CREATE TABLE example_task (id integer PRIMARY KEY, title text NOT NULL DEFAULT '',"
    " done boolean NOT NULL DEFAULT false, owner_id integer)"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- processes ----------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (from /proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS from /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class CpuMeter:
    """CPU seconds spent by a set of processes between start() and stop()."""

    def __init__(self, pids: Sequence[int]):
        self.pids = list(pids)
        self.begin: dict[int, float] = {}
        self.spent: dict[int, float] = {}
        self.wall = 0.0

    def start(self) -> CpuMeter:
        self.begin = {pid: cpu_seconds(pid) for pid in self.pids}
        self.wall = time.monotonic()
        return self

    def stop(self) -> float:
        self.spent = {pid: cpu_seconds(pid) - t for pid, t in self.begin.items()}
        self.wall = time.monotonic() - self.wall
        return sum(self.spent.values())


def postgres_pids(datadir: Path) -> list[int]:
    """The postmaster and every live child process of a cluster."""
    pid_file = datadir / "postmaster.pid"
    try:
        master = int(pid_file.read_text().split()[0])
    except (OSError, ValueError):
        return []
    pids = [master]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[1]) == master:
                    pids.append(int(entry.name))
    return pids


def cluster_cpu_seconds(datadir: Path) -> float:
    """CPU time of a whole PostgreSQL cluster so far, exited backends included.

    The postmaster reaps its backends, so their time lands in its cutime and
    cstime; live children are read one by one. A backend alive at the first
    reading and gone at the second is counted once either way.
    """
    pids = postgres_pids(datadir)
    if not pids:
        return 0.0
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            ticks = int(fields[11]) + int(fields[12])
            if pid == pids[0]:
                ticks += int(fields[13]) + int(fields[14])
            total += ticks / CLK_TCK
    return total


# -- the database ---------------------------------------------------------------


@dataclass
class Cluster:
    """One embedded PostgreSQL for the whole run, removed at the end."""

    root: Path
    url: str = ""
    datadir: Path = field(init=False)

    def __post_init__(self) -> None:
        self.datadir = self.root / "pgdata"

    def start(self) -> None:
        self.url = devdb.start(self.datadir, max_connections=400)

    def stop(self) -> None:
        with contextlib.suppress(devdb.DevDBError):
            devdb.stop(self.datadir, mode="immediate")

    def db_url(self, name: str) -> str:
        return devdb.with_dbname(self.url, name)

    def socket_args(self, name: str) -> list[str]:
        """libpq command-line arguments (for pgbench) reaching database `name`."""
        params = psycopg.conninfo.conninfo_to_dict(self.url)
        return ["-h", str(params["host"]), "-p", str(params["port"]), "-U", devdb.SUPERUSER,
                name]

    def create_database(self, name: str, *, triggers: bool = True) -> str:
        """A fresh database with example_task (ROWS rows) and, by default, its triggers."""
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        url = self.db_url(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(TABLE_DDL)
            conn.execute(
                "INSERT INTO example_task (id, title, owner_id)"
                " SELECT i, 'task ' || i, i %% 100 FROM generate_series(1, %s) i", (ROWS,))
            install.ensure_schema(conn)
            if triggers:
                install.install(conn, TABLE)
            conn.execute("VACUUM ANALYZE example_task")
        return url

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('fsync',"
                " 'synchronous_commit', 'shared_buffers', 'max_connections', 'wal_level',"
                " 'server_version')").fetchall()
        return dict(rows)


@contextlib.contextmanager
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="pgnb-bench-"))
    pg = Cluster(root)
    try:
        pg.start()
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(root, ignore_errors=True)


def reset_log(url: str) -> None:
    """Empty the event log and vacuum (between writer runs, with no daemon attached)."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE bridge.log, bridge.tick")
        conn.execute("VACUUM ANALYZE example_task")
        conn.execute("VACUUM ANALYZE bridge.log")
        conn.execute("CHECKPOINT")


def set_triggers(url: str, on: bool) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        if on:
            install.install(conn, TABLE)
        elif conn.execute("SELECT 1 FROM bridge.watched WHERE tbl = %s", (TABLE,)).fetchone():
            install.uninstall(conn, TABLE)


# -- the daemon -----------------------------------------------------------------


class Daemon:
    """`python -m bridge serve` as a subprocess on a loopback port."""

    def __init__(self, database_url: str, *extra: str, uvloop: bool = False,
                 env: dict[str, str] | None = None, memory_report: Path | None = None):
        self.env = {**os.environ, "BRIDGE_SECRET_KEY": SECRET, **(env or {})}
        self.port = free_port()
        self.database_url = database_url
        module = ["-m", "bridge", "serve"]
        if uvloop or memory_report:
            module = ["-m", "bench.serve", *(["--uvloop"] if uvloop else []),
                      *(["--memory-report", str(memory_report)] if memory_report else []), "--"]
        self.args = [sys.executable, *module, "--database-url", database_url,
                     "--port", str(self.port), "--host", "127.0.0.1",
                     "--allow-anonymous", CHANNEL,
                     "--ping-interval", "0", "--log-level", "WARNING", *extra]
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> Daemon:
        self.proc = subprocess.Popen(self.args, cwd=ROOT, stdin=subprocess.DEVNULL, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}")
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/readyz", timeout=2) as r:
                if r.status == 200:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the daemon did not become ready within 30 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as r:
            return r.read().decode()


# -- pgbench ----------------------------------------------------------------------


PGBENCH = devdb.POSTGRES_BIN_PATH / "pgbench"
UPDATE_SCRIPT = ("\\set id random(1, {rows})\n"
                 "UPDATE example_task SET done = NOT done WHERE id = :id;\n")


@dataclass
class PgbenchResult:
    tps: float
    transactions: int
    latencies_ms: list[float]


class Pgbench:
    """pgbench (single-row UPDATE transactions by default) as a running process."""

    def __init__(self, pg: Cluster, db: str, *, clients: int, seconds: float,
                 rate: float | None = None, log: bool = False, script: str | None = None,
                 env: dict[str, str] | None = None):
        self.work = Path(tempfile.mkdtemp(prefix="pgbench-", dir=pg.root))
        (self.work / "script.sql").write_text(script or UPDATE_SCRIPT.format(rows=ROWS))
        args = [str(PGBENCH), "-n", "-M", "prepared", "-f", str(self.work / "script.sql"),
                "-c", str(clients), "-j", str(clients), "-T", str(max(1, round(seconds)))]
        if rate:
            args += ["-R", str(rate)]
        if log:
            args += ["-l", "--log-prefix", str(self.work / "log")]
        args += pg.socket_args(db)
        self.seconds = seconds
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, cwd=self.work, env={**os.environ, **(env or {})})

    def wait(self) -> PgbenchResult:
        try:
            out, err = self.proc.communicate(timeout=self.seconds + 120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        if self.proc.returncode != 0:
            raise RuntimeError(f"pgbench failed: {err.strip()[-500:]}")
        tps = float(re.search(r"tps = ([\d.]+)", out).group(1))  # type: ignore[union-attr]
        done = int(re.search(r"actually processed: (\d+)", out).group(1))  # type: ignore[union-attr]
        latencies: list[float] = []
        for path in self.work.glob("log*"):
            for line in path.read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    latencies.append(int(parts[2]) / 1000.0)
        shutil.rmtree(self.work, ignore_errors=True)
        return PgbenchResult(tps, done, latencies)


def pgbench(pg: Cluster, db: str, **kwargs: Any) -> PgbenchResult:
    """Run pgbench to the end (see Pgbench for the arguments)."""
    return Pgbench(pg, db, **kwargs).wait()


# -- the machine --------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
    import resource

    import websockets

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                            capture_output=True, check=False).stdout.strip() or None
    return {
        "commit": commit,
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem / 2**30, 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "psycopg": psycopg.__version__,
        "websockets": websockets.version.version,
        "nofile_limit": resource.getrlimit(resource.RLIMIT_NOFILE),
        "loadavg_at_start": os.getloadavg(),
    }


def dump(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
