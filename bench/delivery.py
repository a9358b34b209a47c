"""Scenarios 1 and 2: commit-to-client latency, and fan-out to many subscribers.

The writer is this process: it commits one INSERT per event with a known id
and notes time.monotonic() when COMMIT returns; the subscribers (separate
processes, bench/wsclient.py) note when the frame naming that id arrives.
Latency is the difference, per subscriber and event.
"""

from __future__ import annotations

import itertools
import random
import time
from typing import Any

import psycopg

from .env import Daemon, cpu_seconds
from .load import Clients
from .stats import summary_ms

_ids = itertools.count(1_000_000)


class Writer:
    """Single-row INSERTs on the watched table, each its own transaction, timed at commit."""

    def __init__(self, url: str):
        self.conn = psycopg.connect(url, autocommit=True)
        self.commits: dict[str, float] = {}
        self.conn.execute("SELECT 1")

    def write(self) -> str:
        key = next(_ids)
        self.conn.execute("INSERT INTO example_task (id, title, owner_id) VALUES (%s, 'b', 1)",
                          (key,), prepare=True)
        self.commits[str(key)] = time.monotonic()
        return str(key)

    def close(self) -> None:
        self.conn.close()


def wait_frames(clients: Clients, expected: int, timeout: float) -> int:
    """Poll the load generators until `expected` frames arrived, or the deadline."""
    deadline = time.monotonic() + timeout
    got = clients.frames()
    while got < expected and time.monotonic() < deadline:
        time.sleep(0.05)
        got = clients.frames()
    return got


def latencies(commits: dict[str, float], arrivals: dict[str, list[float]]) -> tuple[
        list[float], list[float]]:
    """Every (event, subscriber) latency, and each event's last-subscriber latency."""
    every: list[float] = []
    last: list[float] = []
    for key, t0 in commits.items():
        got = arrivals.get(key)
        if not got:
            continue
        every.extend(t - t0 for t in got)
        last.append(max(got) - t0)
    return every, last


def run_latency(url: str, *, subscribers: int, events: int, rate: float | None,
                gap: float = 0.02, seed: int = 1, daemon_args: tuple[str, ...] = (),
                uvloop: bool = False, daemon_env: dict[str, str] | None = None) -> dict[str, Any]:
    """Commit `events` writes (Poisson at `rate`/s, or `gap` apart when idle); time delivery."""
    rng = random.Random(seed)
    with Daemon(url, *daemon_args, uvloop=uvloop, env=daemon_env) as daemon, \
            Clients(daemon.port, subscribers, processes=1 if subscribers <= 100 else 2) as clients:
        conn = clients.connect()
        clients.collect()
        writer = Writer(url)
        cpu0 = cpu_seconds(daemon.pid)
        started = time.monotonic()
        next_at = started
        for _ in range(events):
            next_at += rng.expovariate(rate) if rate else gap
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            writer.write()
        wall = time.monotonic() - started
        got = wait_frames(clients, events * subscribers, 30)
        cpu = cpu_seconds(daemon.pid) - cpu0
        every, _ = latencies(writer.commits, clients.collect())
        writer.close()
    return {"subscribers": subscribers, "events": events, "rate": rate or round(1 / gap),
            "connected": conn["connected"], "frames": got,
            "expected_frames": events * subscribers, "latency_ms": summary_ms(every),
            "daemon_cpu_s": round(cpu, 3), "wall_s": round(wall, 2),
            "samples_ms": [round(x * 1000, 3) for x in every[:20000]]}


def run_fanout(url: str, *, subscribers: int, events: int, gap: float, processes: int,
               source_count: int, daemon_args: tuple[str, ...] = (),
               uvloop: bool = False) -> dict[str, Any]:
    """One event at a time to `subscribers` clients of one channel; CPU of both sides."""
    with Daemon(url, *daemon_args, uvloop=uvloop) as daemon, \
            Clients(daemon.port, subscribers, processes=processes,
                    source_count=source_count) as clients:
        conn = clients.connect()
        clients.collect()
        writer = Writer(url)
        expected = events * conn["connected"]
        daemon_meter = clients.meter()
        daemon_meter.pids = [daemon.pid]
        load_meter = clients.meter()
        base_frames = clients.frames()
        daemon_meter.start()
        load_meter.start()
        next_at = time.monotonic()
        for _ in range(events):
            next_at += gap
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            writer.write()
        got = wait_frames(clients, base_frames + expected, 60) - base_frames
        daemon_cpu = daemon_meter.stop()
        load_cpu = load_meter.stop()
        every, last = latencies(writer.commits, clients.collect())
        writer.close()
    return {
        "subscribers": subscribers, "connected": conn["connected"],
        "connect_s": round(conn["seconds"], 2), "events": events, "gap_s": gap,
        "frames": got, "expected_frames": expected,
        "last_client_ms": summary_ms(last), "every_client_ms": summary_ms(every),
        "daemon_cpu_s": round(daemon_cpu, 3), "loadgen_cpu_s": round(load_cpu, 3),
        "loadgen_processes": processes,
        "daemon_cpu_us_per_frame": round(daemon_cpu / got * 1e6, 2) if got else None,
        "loadgen_cpu_us_per_frame": round(load_cpu / got * 1e6, 2) if got else None,
        "last_samples_ms": [round(x * 1000, 3) for x in last],
    }
