"""The database side of the daemon: LISTEN, reconnect with backoff, wake the reader.

Two connections, both autocommit: one sits in LISTEN (psycopg's notifies()
holds its connection, so it can run no query), the other stamps and reads
the log. When either fails, both are dropped and reconnected with capped
exponential backoff and full jitter, LISTEN is issued before catching up
(so no commit can fall between the two), and /readyz is false meanwhile.
There is no polling loop: the reader runs only when something woke it.
"""

from __future__ import annotations

import asyncio
import logging
import random
from contextlib import AsyncExitStack

import psycopg

from .errors import DatabaseError
from .install import NOTIFY_CHANNEL, WATCHED_PAYLOAD
from .metrics import Metrics
from .reader import Reader

logger = logging.getLogger("bridge.listener")

APPLICATION_NAME = "pg_notify_bridge"
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
               "keepalives_count": 3}


class Backoff:
    """Capped exponential backoff with full jitter (sleep a random time up to the cap)."""

    def __init__(self, base: float = 0.1, cap: float = 10.0):
        self.base, self.cap, self.attempt = base, cap, 0

    def next_delay(self) -> float:
        delay = random.uniform(0, min(self.cap, self.base * 2**self.attempt))
        self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class Listener:
    """Keeps the daemon connected to the database and its reader caught up."""

    def __init__(self, database_url: str, reader: Reader, metrics: Metrics,
                 instance: str = ""):
        self.database_url = database_url
        self.reader = reader
        self.metrics = metrics
        self.application_name = f"{APPLICATION_NAME} {instance}".strip()[:63]
        self.ready = asyncio.Event()
        self.connected_once = asyncio.Event()
        self._wake = asyncio.Event()
        self.backoff = Backoff()

    async def connect(self) -> psycopg.AsyncConnection:
        return await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, application_name=self.application_name,
            connect_timeout=10, **_KEEPALIVES,
        )

    async def run(self) -> None:
        """Serve until cancelled; a DatabaseError at the first connection is fatal."""
        while True:
            try:
                await self._session()
            except DatabaseError:
                if not self.reader.started:
                    raise
                logger.exception("the database can no longer serve the daemon")
            except (psycopg.Error, OSError) as exc:
                logger.warning("database connection lost: %s", _one_line(exc))
            self._set_ready(False)
            delay = self.backoff.next_delay()
            logger.info("reconnecting to the database in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with AsyncExitStack() as stack:
            listen_conn = await stack.enter_async_context(await self.connect())
            query_conn = await stack.enter_async_context(await self.connect())
            await _refuse_standby(query_conn)
            await listen_conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
            if self.connected_once.is_set():
                self.metrics.listener_reconnects.inc()
            await self.reader.start(query_conn)
            self.connected_once.set()
            self.backoff.reset()
            self._wake.set()
            listen_task = asyncio.create_task(self._listen(listen_conn))
            try:
                while True:
                    wake = asyncio.create_task(self._wake.wait())
                    done, _ = await asyncio.wait(
                        {wake, listen_task}, return_when=asyncio.FIRST_COMPLETED
                    )
                    if listen_task in done:
                        wake.cancel()
                        listen_task.result()
                        raise psycopg.OperationalError("the LISTEN connection ended")
                    self._wake.clear()
                    await self.reader.catch_up(query_conn)
                    self._set_ready(True)
            finally:
                listen_task.cancel()

    def wake(self) -> None:
        """Ask the reader to stamp and read now (a resume is waiting for a position)."""
        self._wake.set()

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for notify in conn.notifies():
            if notify.payload == WATCHED_PAYLOAD:
                self.reader.reload_watched = True
            self._wake.set()

    def _set_ready(self, ready: bool) -> None:
        if ready and not self.ready.is_set():
            logger.info("listener connected and caught up")
        if ready:
            self.ready.set()
        else:
            self.ready.clear()
        self.metrics.listener_up.set(1 if ready else 0)


async def _refuse_standby(conn: psycopg.AsyncConnection) -> None:
    cur = await conn.execute("SELECT pg_is_in_recovery()")
    row = await cur.fetchone()
    if row and row[0]:
        raise DatabaseError(
            "the database is a standby: LISTEN and the log's stamps need the primary,"
            " point --database-url at it"
        )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
