"""Scenario 8: the same events to the same 1,000 subscribers, Django Channels and the bridge.

Channels: daphne serving bench/peer_asgi.py, channels_redis's pub/sub layer on
a Redis server started here (Debian's redis-server, loopback, no persistence).
The writer commits the same single-row INSERT as for the bridge, then calls
group_send() as a Django view's on_commit hook would; latency is still taken
from the COMMIT returning. Server CPU is daphne's (Redis's shown apart), the
bridge's is the daemon's.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import psycopg

from . import delivery
from .env import ROOT, Cluster, CpuMeter, Daemon, free_port
from .load import Clients
from .stats import summary_ms

REDIS = shutil.which("redis-server") or "/usr/bin/redis-server"
FRAME = ('{{"type":"event","channel":"example_task","position":"","table":"public.example_task",'
         '"op":"INSERT","pks":["{id}"],"count":1}}')
_ids = itertools.count(5_000_000)


def available() -> str | None:
    """Why the Channels peer cannot run here, or None."""
    if not os.path.exists(REDIS):
        return "redis-server is missing: apt-get install redis-server"
    try:
        import channels_redis  # noqa: F401
        import daphne  # noqa: F401
    except ImportError:
        return "daphne/channels/channels-redis are missing: pip install -e '.[bench]'"
    return None


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen within 30 s")


async def _write_and_publish(url: str, events: int, gap: float) -> dict[str, float]:
    """Commit an INSERT, then group_send its event; commit times by id."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    commits: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        next_at = time.monotonic()
        for _ in range(events):
            next_at += gap
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            key = next(_ids)
            await conn.execute("INSERT INTO example_task (id, title, owner_id)"
                               " VALUES (%s, 'c', 1)", (key,), prepare=True)
            commits[str(key)] = time.monotonic()
            await layer.group_send("tasks", {"type": "task.event",
                                             "frame": FRAME.format(id=key)})
        await layer.flush()
    return commits


def _result(name: str, commits: dict[str, float], clients: Clients, subscribers: int,
            meter: CpuMeter, got: int, extra: dict[str, Any]) -> dict[str, Any]:
    every, last = delivery.latencies(commits, clients.collect())
    expected = len(commits) * subscribers
    return {"server": name, "events": len(commits), "frames": got, "expected_frames": expected,
            "latency_ms": summary_ms(every), "last_client_ms": summary_ms(last),
            "server_cpu_s": round(meter.spent.get(meter.pids[0], 0.0), 3),
            "server_cpu_us_per_frame": round(meter.spent[meter.pids[0]] / got * 1e6, 1)
            if got else None, **extra,
            "samples_ms": [round(x * 1000, 3) for x in every[:20000]]}


class ChannelsServer:
    """redis-server and daphne, started once for every Channels run of the scenario."""

    def __init__(self) -> None:
        self.redis_port, self.port = free_port(), free_port()
        self.redis = subprocess.Popen([REDIS, "--port", str(self.redis_port), "--bind",
                                       "127.0.0.1", "--save", "", "--appendonly", "no",
                                       "--dir", "/tmp", "--loglevel", "warning"],
                                      stdout=subprocess.DEVNULL)
        redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.peer_settings",
               "BENCH_REDIS_URL": redis_url}
        self.daphne = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1",
                                        "-p", str(self.port), "-v", "0",
                                        "bench.peer_asgi:application"],
                                       cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        try:
            _wait_port(self.redis_port, self.redis, "redis-server")
            _wait_port(self.port, self.daphne, "daphne")
        except BaseException:
            self.stop()
            raise
        # This process publishes like a Django view would: same settings, same layer.
        os.environ["DJANGO_SETTINGS_MODULE"] = "bench.peer_settings"
        os.environ["BENCH_REDIS_URL"] = redis_url
        import django

        django.setup()

    def stop(self) -> None:
        for proc in (self.daphne, self.redis):
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def channels_run(server: ChannelsServer, url: str, *, subscribers: int, rate: float,
                 events: int, processes: int) -> dict[str, Any]:
    with Clients(server.port, subscribers, processes=processes, path="/ws/tasks/",
                 channels=(), source_count=2) as clients:
        conn = clients.connect()
        clients.collect()
        base = clients.frames()
        meter = CpuMeter([server.daphne.pid, server.redis.pid]).start()
        commits = asyncio.run(_write_and_publish(url, events, 1.0 / rate))
        got = delivery.wait_frames(clients, base + events * conn["connected"], 60) - base
        meter.stop()
        return _result("channels", commits, clients, conn["connected"], meter, got, {
            "connected": conn["connected"], "rate": rate,
            "redis_cpu_s": round(meter.spent[server.redis.pid], 3)})


def bridge_run(url: str, *, subscribers: int, rate: float, events: int,
               processes: int) -> dict[str, Any]:
    with Daemon(url) as daemon, Clients(daemon.port, subscribers, processes=processes,
                                        source_count=2) as clients:
        conn = clients.connect()
        clients.collect()
        base = clients.frames()
        writer = delivery.Writer(url)
        meter = CpuMeter([daemon.pid]).start()
        next_at = time.monotonic()
        for _ in range(events):
            next_at += 1.0 / rate
            pause = next_at - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            writer.write()
        got = delivery.wait_frames(clients, base + events * conn["connected"], 60) - base
        meter.stop()
        writer.close()
        return _result("bridge", writer.commits, clients, conn["connected"], meter, got,
                       {"connected": conn["connected"], "rate": rate})


def peer(pg: Cluster, *, subscribers: int, plan: list[tuple[float, int]],
         processes: int = 2) -> dict[str, Any]:
    why = available()
    if why:
        return {"skipped": why}
    url = pg.create_database("bench_peer")
    runs = []
    server = ChannelsServer()
    try:
        for rate, events in plan:
            runs.append(bridge_run(url, subscribers=subscribers, rate=rate, events=events,
                                   processes=processes))
            runs.append(channels_run(server, url, subscribers=subscribers, rate=rate,
                                     events=events, processes=processes))
    finally:
        server.stop()
    return {"subscribers": subscribers, "runs": runs}
