"""Simulated browser tabs showing the task list: `python -m bench.tabs '<json config>'`.

Each tab refetches the list (the query behind /task-list) the way its page
would, and records when each refetch starts; the harness turns those times
into staleness (commit to the first refetch that starts after it). Refetches
go through a pool of database connections, like the Django workers that
serve /task-list. Designs:

    polling   AJAX polling: every tab refetches once a second (random phase)
    updated   the original snippet: refetch on every `updated` frame
              (against the original server, or the bridge's legacy `/`)
    refetchon bridge.js refetchOn(): token bucket ("burst", default 3; one
              token back per "min_interval", default 1 s), one fetch in
              flight, changes with no token left folded into one fetch
              (with "own_rows" it subscribes to the tab's owner's row channel,
              as the example app's grants narrow it: only changes to that
              user's tasks refetch)
    region    a {% live %} region: the page is rendered (render position read
              first, as LiveRenderMiddleware does, encoded with the daemon's
              key from BRIDGE_SECRET_KEY, then the list query), then
              it subscribes with `since` = that position: no refetch on
              connect; events and resyncs go through the same bucket, and each
              refetch is the list query (the region's page GET)

Stdin commands (one JSON line each): "report" answers {"issued": [[t, ...]
per tab], "starts": [[t, ...] per tab], "received": [[t, ...] per tab], "queries": n,
"resyncs": n} (when each refetch was asked for, when its query started on a pooled
connection, and when each frame that asks for one arrived: `updated`, `event` or
`resync`; the harness compares these with the daemon's frames_sent); "quit" stops.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
import time
from typing import Any

import psycopg
from websockets.asyncio.client import connect

from bridge.positions import Positions
from django_hooks.positions import HEAD_SQL

TASK_LIST = "SELECT id, title, done FROM example_task WHERE owner_id = %s ORDER BY id"
POOL = 2  # per process; the harness runs two processes per design


class Tabs:
    def __init__(self, config: dict[str, Any]):
        self.config = config
        self.count = int(config["tabs"])
        self.issued: list[list[float]] = [[] for _ in range(self.count)]
        self.starts: list[list[float]] = [[] for _ in range(self.count)]
        self.received: list[list[float]] = [[] for _ in range(self.count)]
        self.queries = 0
        self.resyncs = 0  # a region tab that gets one did not resume from its render position
        self.pool: asyncio.Queue[psycopg.AsyncConnection] = asyncio.Queue()
        self.ready = 0
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self) -> None:
        for _ in range(POOL):
            self.pool.put_nowait(await psycopg.AsyncConnection.connect(
                self.config["database_url"], autocommit=True))

    def ask(self, tab: int) -> None:
        """The page asks for the list now (the time is taken before any queueing)."""
        self.issued[tab].append(time.monotonic())
        asyncio.get_running_loop().create_task(self.refetch(tab))

    async def refetch(self, tab: int) -> None:
        conn = await self.pool.get()
        try:
            self.starts[tab].append(time.monotonic())
            self.queries += 1
            owner = (self.config.get("first", 0) + tab) % 100
            cur = await conn.execute(TASK_LIST, (owner,), prepare=True)
            await cur.fetchall()
        finally:
            self.pool.put_nowait(conn)

    async def polling(self, tab: int) -> None:
        next_at = time.monotonic() + random.random()
        self.ready += 1
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 1.0
            self.issued[tab].append(time.monotonic())
            await self.refetch(tab)

    async def updated(self, tab: int) -> None:
        """The original snippet: `if (event.data == 'updated') $.getJSON('/task-list', ...)`."""
        async with connect(self.config["url"], ping_interval=None, compression=None,
                           open_timeout=60, max_queue=None) as ws:
            self.ready += 1
            async for message in ws:
                if message == "updated":
                    self.received[tab].append(time.monotonic())
                    self.ask(tab)

    async def refetchon(self, tab: int) -> None:
        """bridge.js: the first `subscribed` refetches once; events go through the throttle."""
        def fetch() -> Any:
            self.issued[tab].append(time.monotonic())
            return self.refetch(tab)

        throttle = Throttle(fetch, self.config.get("min_interval", 1.0),
                            self.config.get("burst", 3))
        async with connect(self.config["url"], ping_interval=None, compression=None,
                           open_timeout=60, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": self.channel(tab)}))
            async for message in ws:
                at = time.monotonic()
                kind = json.loads(message).get("type")
                if kind == "subscribed":
                    self.ready += 1
                    throttle.trigger()
                elif kind in ("event", "resync"):
                    self.received[tab].append(at)
                    throttle.trigger()

    def channel(self, tab: int) -> str:
        """The table's channel (a list every change concerns), or with "own_rows" the tab's
        owner's row channel: what the example app's grants narrow refetchOn() to."""
        if self.config.get("own_rows"):
            return f"example_task:owner_id={(self.config.get('first', 0) + tab) % 100}"
        return "example_task"

    async def render(self, tab: int) -> str:
        """The page load of a live region: the render position, then the page's query."""
        conn = await self.pool.get()
        try:
            cur = await conn.execute(HEAD_SQL)
            row = await cur.fetchone()
            assert row is not None
            db_id, tick, row_id, pruned = row
            head = (tick, row_id) if tick is not None else (int(pruned or 0), 0)
            position = Positions([os.environ["BRIDGE_SECRET_KEY"]]).encode(db_id, head)
            owner = (self.config.get("first", 0) + tab) % 100
            await (await conn.execute(TASK_LIST, (owner,), prepare=True)).fetchall()
        finally:
            self.pool.put_nowait(conn)
        return position

    async def region(self, tab: int) -> None:
        """bridge.js with a region: subscribe from the render position; no refetch on connect."""
        def fetch() -> Any:
            self.issued[tab].append(time.monotonic())
            return self.refetch(tab)

        throttle = Throttle(fetch, self.config.get("min_interval", 1.0),
                            self.config.get("burst", 3))
        since = await self.render(tab)
        async with connect(self.config["url"], ping_interval=None, compression=None,
                           open_timeout=60, max_queue=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "channel": "example_task",
                                      "since": since}))
            async for message in ws:
                at = time.monotonic()
                kind = json.loads(message).get("type")
                if kind == "subscribed":
                    self.ready += 1
                elif kind in ("event", "resync"):
                    self.received[tab].append(at)
                    self.resyncs += kind == "resync"
                    throttle.trigger()

    def start(self) -> None:
        run = getattr(self, self.config["design"])
        for tab in range(self.count):
            self.tasks.append(asyncio.get_running_loop().create_task(run(tab)))


class Throttle:
    """bridge.js's throttle(): a token bucket, at most one call in flight, one trailing fold.

    It starts with one token (the first load); one comes back per
    `min_interval`, up to `burst` saved; a trigger while a call runs or with no
    token left marks one call owed, made when the call ends or the next token
    comes. Kept step for step like bridge.js, so the bench measures the page.
    """

    def __init__(self, fn: Any, min_interval: float, burst: int = 3):
        self.fn = fn
        self.min_interval = min_interval
        self.burst = max(1, burst)
        self.tokens = 1.0
        self.stamp = time.monotonic()
        self.running = False
        self.pending = False
        self.timer: asyncio.TimerHandle | None = None

    def trigger(self) -> None:
        if self.running or self.timer:
            self.pending = True
            return
        self.pending = True
        self._schedule()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = (min(self.burst, self.tokens + (now - self.stamp) / self.min_interval)
                       if self.min_interval > 0 else float(self.burst))
        self.stamp = now

    def _schedule(self) -> None:
        self._refill()
        if self.tokens >= 1:
            self._start()
        else:
            wait = (1 - self.tokens) * self.min_interval
            self.timer = asyncio.get_running_loop().call_later(wait, self._due)

    def _due(self) -> None:
        self.timer = None
        if self.pending:
            self._start()

    def _start(self) -> None:
        self.running = True
        self.pending = False
        self._refill()
        self.tokens -= 1
        task = asyncio.get_running_loop().create_task(self.fn())
        task.add_done_callback(self._done)

    def _done(self, _: object) -> None:
        self.running = False
        if self.pending:
            self._schedule()


async def main(config: dict[str, Any]) -> None:
    random.seed(config.get("seed", 1))
    tabs = Tabs(config)
    await tabs.open()
    tabs.start()
    loop = asyncio.get_running_loop()
    deadline = time.monotonic() + 60
    while tabs.ready < tabs.count and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": tabs.ready}), flush=True)
    while line := await reader.readline():
        cmd = json.loads(line)["cmd"]
        if cmd == "report":
            print(json.dumps({"issued": tabs.issued, "starts": tabs.starts,
                              "received": tabs.received,
                              "queries": tabs.queries, "resyncs": tabs.resyncs}), flush=True)
        elif cmd == "quit":
            break
    for task in tabs.tasks:
        task.cancel()
    await asyncio.gather(*tabs.tasks, return_exceptions=True)
    while not tabs.pool.empty():
        await tabs.pool.get_nowait().close()
    print(json.dumps({"bye": True}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1])))
