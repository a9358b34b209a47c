"""PostgreSQL CPU over a window, per backend, attributed by application_name.

Query counts say nothing about what a query costs (a tab's list query scans
a table, the daemon's stamp is a few index lookups), so scenario 7 charges
each design with the on-CPU time of the backends that serve it. Two readings
of every process of the cluster, at the start and at the end of the window:

- on-CPU time comes from /proc/<pid>/schedstat (first field, nanoseconds):
  /proc/<pid>/stat counts 10 ms ticks, and at 0.1 changes/s the daemon spends
  well under a tick per change;
- who a backend serves comes from pg_stat_activity (pid, datname,
  application_name, backend_type), so every process that connects for a
  design names itself (PGAPPNAME, or application_name in its connect call);
- a backend that ends inside the window takes its /proc entry with it, and
  one that starts and ends inside it is never seen at all. The postmaster
  reaps every backend, so their CPU lands in its cutime + cstime (reported
  in ticks, but summed in nanoseconds by the kernel, so the difference is
  right to a tick): what exited children spent inside the window is that
  difference minus what the backends that ended had spent by the start.
  Backends that start inside the window are counted whole (a forked
  process's on-CPU time starts at zero). Both kinds are listed in the
  result, never silently dropped;
- to name what started and ended between the two readings (autovacuum
  workers, mostly), a Watcher samples the postmaster's children 20 times a
  second and keeps each newcomer's process title and its latest on-CPU time:
  a lower bound of its share (what it spent after the last sample is only in
  the postmaster's total), and one that lived between two samples is missed.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from .env import postgres_pids

TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
ACTIVITY_SQL = ("SELECT pid, coalesce(datname, ''), coalesce(application_name, ''),"
                " coalesce(backend_type, ''), left(coalesce(query, ''), 80) FROM pg_stat_activity")


@dataclass(frozen=True)
class Backend:
    """One process of the cluster as one reading saw it."""

    pid: int
    database: str
    application: str
    kind: str
    """pg_stat_activity's backend_type; '' for a process it does not list (the logger)."""
    cpu_ns: int
    query: str = ""
    """Its last statement (the start of it): tells a daemon's sessions apart."""


@dataclass(frozen=True)
class Snapshot:
    """Every child of the postmaster, and what the postmaster has reaped so far."""

    at: float
    """time.monotonic() halfway through the reading."""
    backends: dict[int, Backend]
    reaped_ns: int
    """The postmaster's cutime + cstime: the CPU of every child it has reaped."""


@dataclass
class Window:
    """What each backend spent between two snapshots."""

    seconds: float
    spent_ns: dict[int, int] = field(default_factory=dict)
    """Per pid alive at the end: its on-CPU time inside the window."""
    backends: dict[int, Backend] = field(default_factory=dict)
    """Every pid seen at either end (the end's reading when it has one)."""
    started: list[int] = field(default_factory=list)
    """Pids alive at the end only: started inside the window, counted whole."""
    ended: list[int] = field(default_factory=list)
    """Pids alive at the start only: their CPU inside the window is in `exited_ns`."""
    exited_ns: int = 0
    """CPU spent inside the window by children that exited in it (to a tick)."""


def parse_schedstat(text: str) -> int:
    """On-CPU nanoseconds: the first of /proc/<pid>/schedstat's three fields."""
    return int(text.split()[0])


def parse_stat(text: str) -> tuple[int, int]:
    """(parent pid, cutime + cstime in ticks) from a /proc/<pid>/stat line.

    The command name in parentheses may hold spaces, so fields count from
    the last ')'.
    """
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[13]) + int(fields[14])


def window(start: Snapshot, end: Snapshot) -> Window:
    """The CPU each process spent between two snapshots, and what exited in between.

    `exited_ns` is right to one tick (the postmaster's counters are read in
    ticks) and never below zero.
    """
    win = Window(seconds=end.at - start.at)
    for pid, b in end.backends.items():
        before = start.backends.get(pid)
        if before is None:
            win.started.append(pid)
            win.spent_ns[pid] = b.cpu_ns
        else:
            win.spent_ns[pid] = b.cpu_ns - before.cpu_ns
            if not b.kind:  # named at the start only (it was connecting at the end's reading)
                b = before
        win.backends[pid] = b
    win.ended = sorted(pid for pid in start.backends if pid not in end.backends)
    for pid in win.ended:
        win.backends[pid] = start.backends[pid]
    reaped = end.reaped_ns - start.reaped_ns
    before_window = sum(start.backends[pid].cpu_ns for pid in win.ended)
    win.exited_ns = max(0, reaped - before_window)
    win.started.sort()
    return win


@dataclass
class Groups:
    """A window's CPU summed per group of backends (a design's tabs, the daemon...)."""

    ms: dict[str, float]
    started: dict[str, list[str]]
    """Per group, the backends (application and pid) that started inside the window."""
    ended: dict[str, list[str]]
    """Per group, the backends that ended inside it: their last part is not in `ms`."""


def group(win: Window, classify: Callable[[Backend], str]) -> Groups:
    """Sum the window per group; `classify` names the group of each backend."""
    out = Groups({}, {}, {})
    for pid, backend in win.backends.items():
        name = classify(backend)
        out.ms[name] = out.ms.get(name, 0.0) + win.spent_ns.get(pid, 0) / 1e6
        label = f"{backend.application or backend.kind or '?'} (pid {pid})"
        if pid in win.started:
            out.started.setdefault(name, []).append(label)
        if pid in win.ended:
            out.ended.setdefault(name, []).append(label)
    return out


@dataclass
class Charge:
    """One design's CPU over a window."""

    ms: float
    parts_ms: dict[str, float]
    ended_in_window: list[str]
    """Backends of its groups that ended inside the window: their last part is missing."""

    @property
    def complete(self) -> bool:
        return not self.ended_in_window


def charge(groups: Groups, charges: Mapping[str, Iterable[str]],
           extra_ms: Mapping[str, float] | None = None) -> dict[str, Charge]:
    """Each design's CPU: the sum of its groups (plus `extra_ms`, e.g. a trigger's cost).

    A design is complete only when none of its groups lost a backend that
    ended inside the window: its number would be short by that backend's
    last part, so the report does not judge it.
    """
    extra = dict(extra_ms or {})
    out: dict[str, Charge] = {}
    for design, names in charges.items():
        parts = {n: groups.ms.get(n, 0.0) + extra.get(n, 0.0) for n in names}
        lost = [label for n in parts for label in groups.ended.get(n, [])]
        out[design] = Charge(sum(parts.values()), parts, lost)
    return out


def paired_writes(pairs: Iterable[tuple[int, int]]) -> dict[str, float | int]:
    """What the capture trigger adds to a writer: (with, without) ns of the same UPDATE.

    Each pair is the writer backend's on-CPU time for one UPDATE of the
    watched table and the same UPDATE of an identical table without
    triggers, made back to back in random order; `added_ms` is the sum of
    the differences (what the bridge is charged with), the means show the
    cost per write.
    """
    pairs = list(pairs)
    n = len(pairs)
    with_ns = sum(w for w, _ in pairs)
    without_ns = sum(p for _, p in pairs)
    return {"writes": n, "added_ms": round((with_ns - without_ns) / 1e6, 3),
            "with_us": round(with_ns / n / 1e3, 1) if n else 0.0,
            "without_us": round(without_ns / n / 1e3, 1) if n else 0.0}


def process_title(cmdline: bytes) -> str:
    """A PostgreSQL process's title ("autovacuum worker db", "user db [local] idle")."""
    return cmdline.split(b"\0")[0].decode(errors="replace").removeprefix("postgres: ").strip()


def transients(seen: Mapping[int, tuple[str, int]], start: Snapshot,
               end: Snapshot) -> dict[str, dict[str, float]]:
    """Processes a Watcher saw that neither reading did, per title: count and CPU (ms).

    The CPU is each one's last sample, a lower bound of what it spent.
    """
    out: dict[str, dict[str, float]] = {}
    for pid, (title, ns) in seen.items():
        if pid in start.backends or pid in end.backends:
            continue
        entry = out.setdefault(title, {"count": 0, "cpu_ms": 0.0})
        entry["count"] += 1
        entry["cpu_ms"] = round(entry["cpu_ms"] + ns / 1e6, 3)
    return out


# -- the readings (I/O) ---------------------------------------------------------


def _on_cpu(pids: Iterable[int]) -> dict[int, int]:
    """pid -> on-CPU ns, for those of `pids` still alive."""
    out: dict[int, int] = {}
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            out[pid] = parse_schedstat(Path(f"/proc/{pid}/schedstat").read_text())
    return out


def read(conn: psycopg.Connection, datadir: Path) -> Snapshot:
    """One reading of the whole cluster: /proc first, then pg_stat_activity for the names.

    A backend that connects between the two has no name yet: it is kept with
    an empty application_name (its group will say so), not dropped.
    """
    t0 = time.monotonic()
    pids = postgres_pids(datadir)
    if not pids:
        raise RuntimeError(f"no postmaster serves {datadir}")
    _, reaped_ticks = parse_stat(Path(f"/proc/{pids[0]}/stat").read_text())
    cpu = _on_cpu(pids[1:])
    t1 = time.monotonic()
    names = {row[0]: row[1:] for row in conn.execute(ACTIVITY_SQL).fetchall()}
    backends = {}
    for pid, ns in cpu.items():
        database, application, kind, query = names.get(pid, ("", "", "", ""))
        backends[pid] = Backend(pid, database, application, kind, ns, " ".join(query.split()))
    return Snapshot((t0 + t1) / 2, backends, reaped_ticks * TICK_NS)


class Watcher:
    """Samples the postmaster's children during a window to name the short-lived ones."""

    def __init__(self, datadir: Path, interval: float = 0.05):
        self.master = int((datadir / "postmaster.pid").read_text().split()[0])
        self.interval = interval
        self.seen: dict[int, tuple[str, int]] = {}
        """pid -> (latest process title, latest on-CPU ns) of every child sampled."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pgcpu-watcher", daemon=True)

    def start(self) -> Watcher:
        self._thread.start()
        return self

    def stop(self) -> dict[int, tuple[str, int]]:
        """Stop sampling (again, or before it started: no harm) and return what was seen."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        return self.seen

    def _run(self) -> None:
        children = Path(f"/proc/{self.master}/task/{self.master}/children")
        while not self._stop.wait(self.interval):
            with contextlib.suppress(OSError):
                for pid in map(int, children.read_text().split()):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        title = process_title(Path(f"/proc/{pid}/cmdline").read_bytes())
                        ns = parse_schedstat(Path(f"/proc/{pid}/schedstat").read_text())
                        self.seen[pid] = (title, ns)
