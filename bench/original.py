"""The original design, re-implemented minimally to measure against: `python -m bench.original`.

What users ran before the bridge: a WebSocket server with a 0.5 s sync loop
that fingerprints the task table with one query and, when the fingerprint
changed, sends `updated` to every client; a client connecting or leaving
also sends `updated` to all. Every client then refetches /task-list. It
counts its own queries and prints the count and its running time when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time

import psycopg
from websockets.asyncio.server import ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed

SYNC_EVERY = 0.5
FINGERPRINT = "SELECT count(*), sum(hashtext(id::text || title || done::text)) FROM example_task"


async def main(database_url: str, port: int) -> int:
    clients: set[ServerConnection] = set()
    queries = 0

    async def handler(ws: ServerConnection) -> None:
        clients.add(ws)
        broadcast(clients, "updated")
        try:
            async for message in ws:
                if message != "success":
                    await ws.send("updated")
        except ConnectionClosed:
            pass
        finally:
            clients.discard(ws)
            broadcast(clients, "updated")

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, \
            serve(handler, "127.0.0.1", port, ping_interval=None, compression=None):
        print("ready", flush=True)
        started = time.monotonic()
        last = None
        while not stop.is_set():
            cur = await conn.execute(FINGERPRINT)
            queries += 1
            now = await cur.fetchone()
            if last is not None and now != last:
                broadcast(clients, "updated")
            last = now
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), SYNC_EVERY)
    print(queries, round(time.monotonic() - started, 3), flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.database_url, args.port)))
