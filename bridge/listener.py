"""The database side of the daemon: LISTEN, reconnect with backoff, wake the reader.

Two connections, both autocommit: one sits in LISTEN (psycopg's notifies()
holds its connection, so it can run no query), the other stamps and reads
the log. When either fails, both are dropped and reconnected with capped
exponential backoff and full jitter, LISTEN is issued before catching up
(so no commit can fall between the two), and /readyz is false meanwhile.
The reader runs only when something woke it, with one exception that
lasts only as long as a writer transaction that skipped its NOTIFY stays
open (see "waiting" below).

A third connection holds the NOTIFY guard (guard.py), which decides whether
writers NOTIFY at all. The daemon is in one of three modes:

- waiting: it has asked for the guard key and reads on every wake-up. Writers
  NOTIFY (a queued exclusive request fails their try-lock). Once the key is
  granted, every writer that skipped its NOTIFY has ended, so one more read
  sees all of their rows and the daemon sleeps. Until then it also reads on
  its own, backing off from 20 ms to WAITING_READ_CAP: a writer that skipped
  and commits while another that skipped stays open has nobody to wake it.
- sleeping: it holds the key and reads only when woken, one read per wake-up,
  as before the guard. When DRAIN_AFTER reads in a row each found events and
  ended with the next wake-up already pending, changes come faster than it
  reads: it releases the key and drains.
- draining: writers skip NOTIFY; the daemon reads back to back (at most one
  read every DRAIN_INTERVAL), and after SLEEP_AFTER reads in a row found
  nothing it asks for the key again.

At low rates the daemon therefore never leaves sleeping: no more reads per
change than a NOTIFY-per-commit design, and no reads at all when idle.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import secrets
import time
from contextlib import AsyncExitStack
from typing import Any

import psycopg
from psycopg import sql

from .errors import DatabaseError
from .guard import Guard
from .install import NOTIFY_CHANNEL, WATCHED_PAYLOAD
from .metrics import Metrics
from .reader import Reader

logger = logging.getLogger("bridge.listener")

APPLICATION_NAME = "pg_notify_bridge"
STABLE_SESSION = 10.0
"""Seconds a session must stay up before its loss restarts the backoff from the base."""
PROBE_PREFIX = "probe:"
PROBE_TIMEOUT = 3.0
DRAIN_AFTER = 3
"""Busy reads in a row (events found, next wake-up already pending) before draining."""
SLEEP_AFTER = 2
"""Empty reads in a row, while draining, before asking for the guard key again."""
DRAIN_INTERVAL = 0.02
"""Least seconds between the starts of two reads while draining. Each read is a stamping
transaction with its own WAL flush; on a small machine back-to-back reads of one or two
rows each take the CPU the writers need (bench/RESULTS.md, writer cost)."""
WAITING_READ_CAP = 1.0
"""Longest gap, in seconds, between two reads while the guard key is asked for and not yet
granted. Such a wait lasts only while a transaction that skipped its NOTIFY stays open; a
writer that skipped beside it and committed meanwhile has no NOTIFY to wake the daemon,
so the daemon reads on its own, 20 ms after asking, then twice as long each time, up to
this: its rows are late by at most a second, never until the long transaction ends."""
WAITING, SLEEPING, DRAINING = "waiting", "sleeping", "draining"
_KEEPALIVES: dict[str, Any] = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5,
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
        self._woken_at: float | None = None
        self.backoff = Backoff()
        self._up_since: float | None = None
        self.mode = WAITING
        """The guard mode (see the module docstring); read by tests and metrics."""
        self.read_mode = WAITING
        """The mode in which the read under way (or the last one) began."""
        self._own_pid = 0

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
                what = "connection lost" if self.connected_once.is_set() else "unreachable"
                logger.warning("database %s: %s", what, _one_line(exc))
            self._set_ready(False)
            loop = asyncio.get_running_loop()
            if self._up_since is not None and loop.time() - self._up_since >= STABLE_SESSION:
                self.backoff.reset()
            self._up_since = None
            delay = self.backoff.next_delay()
            logger.info("reconnecting to the database in %.2fs", delay)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        async with AsyncExitStack() as stack:
            listen_conn = await stack.enter_async_context(await self.connect())
            query_conn = await stack.enter_async_context(await self.connect())
            guard_conn = await stack.enter_async_context(await self.connect())
            # A stamp must not be lost in a crash after its events went out, or the rows
            # would be stamped again (a duplicate, or a lower tick that readers skip).
            await query_conn.execute("SET synchronous_commit = on")
            await _refuse_standby(query_conn)
            await listen_conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(NOTIFY_CHANNEL)))
            await _probe_listen(listen_conn, query_conn)
            if self.connected_once.is_set():
                self.metrics.listener_reconnects.inc()
            self._own_pid = query_conn.info.backend_pid
            # Ask for the key before the first read: writers NOTIFY from here on,
            # and the read after the grant covers those that had skipped it.
            guard = Guard(guard_conn, self._wake.set)
            stack.push_async_callback(guard.close)
            self._set_mode(WAITING)
            guard.request()
            await self.reader.start(query_conn)
            self.connected_once.set()
            self._up_since = asyncio.get_running_loop().time()
            self._wake.set()
            listen_task = asyncio.create_task(self._listen(listen_conn))
            # The LISTEN task ending (its connection died) wakes the loop too:
            # one Event to wait on, no task created per wake-up.
            listen_task.add_done_callback(lambda _: self._wake.set())
            try:
                await self._serve(query_conn, guard, listen_task)
            finally:
                listen_task.cancel()

    async def _serve(self, query_conn: psycopg.AsyncConnection, guard: Guard,
                     listen_task: asyncio.Task[None]) -> None:
        """Read on every wake-up (every turn while draining); switch modes as the rate asks."""
        busy = empty = 0
        loop = asyncio.get_running_loop()
        read_at = loop.time()
        pause = DRAIN_INTERVAL
        while True:
            if self.mode == DRAINING:
                await asyncio.sleep(max(0.0, read_at + DRAIN_INTERVAL - loop.time()))
            elif self.mode == WAITING and not guard.held:
                # A timer that wakes the loop, not asyncio.wait_for: on Python 3.11
                # wait_for can swallow a cancel that meets a wake-up, and the daemon
                # would then never stop.
                timer = loop.call_later(pause, self._wake.set)
                try:
                    await self._wake.wait()
                finally:
                    timer.cancel()
                pause = min(pause * 2, WAITING_READ_CAP)
            else:
                await self._wake.wait()
            if listen_task.done():
                listen_task.result()
                raise psycopg.OperationalError("the LISTEN connection ended")
            guard.check()
            self._wake.clear()
            # The read right after the grant is the last one of waiting: it sees every
            # row of the writers that skipped their NOTIFY. Sleeping reads come after it.
            granted = self.mode == WAITING and guard.held
            woken, self._woken_at = self._woken_at, None
            self.read_mode = self.mode
            read_at = loop.time()
            found = await self.reader.catch_up(query_conn)
            if found and woken is not None:
                self.metrics.delivery_lag.observe(time.monotonic() - woken)
            self._set_ready(True)
            if granted:
                self._set_mode(SLEEPING)
                await _say_sleeping(query_conn, True)
                busy = 0
            elif self.mode == SLEEPING:
                busy = busy + 1 if found and self._wake.is_set() else 0
                if busy >= DRAIN_AFTER:
                    await _say_sleeping(query_conn, False)
                    await guard.release()
                    self._set_mode(DRAINING)
                    empty = 0
            elif self.mode == DRAINING:
                empty = 0 if found else empty + 1
                if empty >= SLEEP_AFTER:
                    self._set_mode(WAITING)
                    guard.request()
                    pause = DRAIN_INTERVAL

    def _set_mode(self, mode: str) -> None:
        if mode != self.mode:
            self.metrics.guard_switches.labels(mode=mode).inc()
        self.mode = mode

    def wake(self) -> None:
        """Ask the reader to stamp and read now (a resume is waiting for a position)."""
        self._wake.set()

    async def _listen(self, conn: psycopg.AsyncConnection) -> None:
        async for notify in conn.notifies():
            if notify.payload.startswith(PROBE_PREFIX):
                continue  # another daemon checking its own LISTEN
            if notify.pid == self._own_pid:
                continue  # our own tick: we read it already
            self.metrics.notifies.inc()
            if notify.payload == WATCHED_PAYLOAD:
                self.reader.reload_watched = True
            if self._woken_at is None:  # the first commit since the last catch-up
                self._woken_at = time.monotonic()
            self._wake.set()

    def _set_ready(self, ready: bool) -> None:
        if ready and not self.ready.is_set():
            logger.info("listener connected and caught up")
        if ready:
            self.ready.set()
        else:
            self.ready.clear()
        self.metrics.listener_up.set(1 if ready else 0)


async def _say_sleeping(conn: psycopg.AsyncConnection, sleeping: bool) -> None:
    """Tell bridge.stamp() on this session whether the daemon holds the key and sleeps.

    A sleeping daemon's ticks wake no other daemon (every writer NOTIFYs while it
    holds the key), which spares a NOTIFY and its echo per read at low rates.
    """
    await conn.execute("SELECT set_config('pg_notify_bridge.sleeping', %s, false)",
                       ("on" if sleeping else "off",))


async def _refuse_standby(conn: psycopg.AsyncConnection) -> None:
    cur = await conn.execute("SELECT pg_is_in_recovery()")
    row = await cur.fetchone()
    if row and row[0]:
        raise DatabaseError(
            "the database is a standby: LISTEN and the log's stamps need the primary,"
            " point --database-url at it"
        )


async def _probe_listen(listen_conn: psycopg.AsyncConnection,
                        query_conn: psycopg.AsyncConnection) -> None:
    """Refuse a connection on which LISTEN cannot work (PgBouncer's transaction pooling).

    Detected by what it does, not by asking: NOTIFY a random probe from the
    query connection and require it on the LISTEN connection. A transaction
    pooler hands the LISTEN's server connection to other clients, so the probe
    never comes back. Other notifications read meanwhile are not lost: the
    reader catches up from the log after this.
    """
    probe = PROBE_PREFIX + secrets.token_hex(8)
    await query_conn.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, probe))
    async with contextlib.aclosing(listen_conn.notifies(timeout=PROBE_TIMEOUT)) as notifies:
        async for notify in notifies:
            if notify.payload == probe:
                return
    raise DatabaseError(
        f"LISTEN does not work on this connection (a NOTIFY probe did not come back within"
        f" {PROBE_TIMEOUT:g}s), as behind PgBouncer's transaction pooling (pool_mode ="
        " transaction): point --database-url at PostgreSQL directly, or at a pool in session"
        " mode"
    )


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
