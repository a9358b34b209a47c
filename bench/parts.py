"""Where the idle latency goes: the database's share of commit-to-client, piece by piece.

A woken daemon waits for the NOTIFY, then runs bridge.advance(): it stamps
the committed rows with a tick and reads them back, in one round trip whose
COMMIT waits for the WAL flush (a position must never be handed out twice,
so the stamp is durable before any frame leaves). This times each piece on
its own, the way the daemon's sessions run it, and the same call without the
flush to show what durability costs. Everything after advance() returns
(hub, frame, socket, client) is the rest of scenario 1's latency.
"""

from __future__ import annotations

import time
from typing import Any

import psycopg

from .stats import summary_ms

UPDATE = "UPDATE example_task SET done = NOT done WHERE id = %s"
ADVANCE = "SELECT tick, id FROM bridge.advance(%s, %s, 1000)"


def latency_parts(url: str, *, events: int, gap: float = 0.01) -> dict[str, Any]:
    """Per event: commit -> NOTIFY at a listener, advance() with and without the WAL flush."""
    with psycopg.connect(url, autocommit=True) as writer, \
            psycopg.connect(url, autocommit=True) as listener, \
            psycopg.connect(url, autocommit=True) as daemon:
        listener.execute("LISTEN pg_notify_bridge")
        notifies = listener.notifies(timeout=10)
        last = daemon.execute("SELECT coalesce(max(tick), 0), coalesce(max(id), 0)"
                              " FROM bridge.log WHERE tick IS NOT NULL").fetchone()
        assert last is not None
        timings: dict[str, list[float]] = {"notify": [], "advance": [], "advance_no_flush": []}
        for flush in ("on", "off"):
            daemon.execute(f"SET synchronous_commit = {flush}")
            for i in range(events):
                writer.execute(UPDATE, (i % 1000 + 1,), prepare=True)
                committed = time.monotonic()
                next(notifies)
                woken = time.monotonic()
                rows = daemon.execute(ADVANCE, last, prepare=True).fetchall()
                done = time.monotonic()
                assert rows, "advance() returned no row for a committed change"
                last = rows[-1]
                if flush == "on":
                    timings["notify"].append(woken - committed)
                    timings["advance"].append(done - woken)
                else:
                    timings["advance_no_flush"].append(done - woken)
                time.sleep(gap)
        notifies.close()  # it holds the listener's connection until closed
        round_trip = []
        for _ in range(events):
            started = time.monotonic()
            daemon.execute("SELECT 1", prepare=True)
            round_trip.append(time.monotonic() - started)
    return {"events": events, **{f"{k}_ms": summary_ms(v) for k, v in timings.items()},
            "select_1_ms": summary_ms(round_trip)}
