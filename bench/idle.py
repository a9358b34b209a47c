"""Scenario 4: many idle subscribers on one daemon, and what each one costs in memory.

The daemon runs with its defaults (20 s WebSocket pings, compression off);
the load generators answer pings. RSS is read from /proc before the clients
connect and once they are all subscribed; the difference divided by the
number of clients is the per-connection cost (kernel socket buffers are not
in RSS). A second, smaller run traces Python allocations (tracemalloc) to
say what that cost is made of, and a third offers permessage-deflate to show
what compression would add.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from .env import Daemon, rss_bytes
from .load import Clients

DEFAULTS = ("--ping-interval", "20s")


def _settle(pid: int) -> int:
    """RSS once it stopped moving (allocations after the last handshake settle quickly)."""
    last = rss_bytes(pid)
    for _ in range(20):
        time.sleep(0.25)
        now = rss_bytes(pid)
        if abs(now - last) < 64 * 1024:
            return now
        last = now
    return last


def _memory(pid: int, report: Path) -> dict[str, int]:
    """Ask a `bench.serve --memory-report` daemon for its live allocations by file."""
    report.unlink(missing_ok=True)
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + 60
    while not report.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return dict(json.loads(report.read_text()))


def idle(url: str, *, connections: int, processes: int, sources: int,
         deflate: bool = False, memory_report: Path | None = None) -> dict[str, Any]:
    extra = (*DEFAULTS, *(("--compression", "true") if deflate else ()))
    with Daemon(url, *extra, memory_report=memory_report) as daemon:
        before = _settle(daemon.pid)
        if memory_report:
            mem_before = _memory(daemon.pid, memory_report)
        with Clients(daemon.port, connections, processes=processes, source_count=sources,
                     record=False, deflate=deflate) as clients:
            conn = clients.connect()
            after = _settle(daemon.pid)
            breakdown = None
            if memory_report:
                mem_after = _memory(daemon.pid, memory_report)
                n = max(conn["connected"], 1)
                deltas = {k: (v - mem_before.get(k, 0)) / n for k, v in mem_after.items()}
                breakdown = {k: round(v) for k, v in sorted(deltas.items(), key=lambda kv: -kv[1])
                             if v >= 16}
            open_now = sum(a["open"] for a in clients.ask("counts"))
    connected = conn["connected"]
    return {"connections": connections, "connected": connected, "failed": conn["failed"],
            "still_open": open_now, "connect_s": round(conn["seconds"], 2),
            "compression": deflate,
            "rss_before_mib": round(before / 2**20, 1),
            "rss_after_mib": round(after / 2**20, 1),
            "rss_per_connection_kib": round((after - before) / max(connected, 1) / 1024, 2),
            "python_heap_per_connection_bytes": breakdown}
