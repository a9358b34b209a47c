"""The NOTIFY guard: the daemon's hold on the advisory key that makes writers NOTIFY.

A capture trigger NOTIFYs only when it cannot take install.GUARD_KEY shared
(pg_try_advisory_xact_lock_shared, which never waits). The daemon holds the
key exclusively, as a session lock on a connection of its own, while it sleeps
on LISTEN; it lets go of it while it drains the log with back-to-back reads.

Taking the key again waits until every writer that skipped its NOTIFY has
ended, and PostgreSQL's lock manager makes a try-lock fail while an exclusive
request waits, so writers NOTIFY again from the moment the request is queued.
The wait runs as a task on this connection: the LISTEN connection keeps
answering notifications meanwhile (and the listener reads on its own, at
most once a second, while the wait lasts: see listener.py). A session lock
dies with its connection, so a daemon that dies (or loses this connection) cannot leave
writers without wake-ups; the task also watches the connection while the key
is held, so losing it ends the daemon's session at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import psycopg

from .install import GUARD_KEY

_LOCK = "SELECT pg_advisory_lock(%s)"
_UNLOCK = "SELECT pg_advisory_unlock(%s)"


class Guard:
    """Requests, holds and releases the guard key on one autocommit connection."""

    def __init__(self, conn: psycopg.AsyncConnection, on_change: Callable[[], None]):
        self.conn = conn
        self.on_change = on_change
        """Called when the key is granted or the task ends (the connection died)."""
        self.held = False
        self._task: asyncio.Task[None] | None = None

    @property
    def requested(self) -> bool:
        """Whether the key is held or being waited for."""
        return self._task is not None

    def request(self) -> None:
        """Start waiting for the key; on_change() runs when it is granted."""
        if self._task is None:
            self._task = asyncio.create_task(self._hold())
            self._task.add_done_callback(lambda _: self.on_change())

    def check(self) -> None:
        """Raise what ended the task (the connection failed) if it ended."""
        if self._task is not None and self._task.done():
            self._task.result()
            raise psycopg.OperationalError("the guard connection ended")

    async def release(self) -> None:
        """Let go of the key (writers stop NOTIFYing); only once it is held.

        Never while the request waits: cancelling a pending lock request would
        leave it to be granted later, to nobody.
        """
        if not self.held:
            raise RuntimeError("the guard key is not held: wait for it before releasing it")
        task, self._task = self._task, None
        assert task is not None
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self.held = False
        await self.conn.execute(_UNLOCK, (GUARD_KEY,))

    async def close(self) -> None:
        """Stop the task; the key goes with the connection when the caller closes it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, psycopg.Error, OSError):
                await task

    async def _hold(self) -> None:
        await self.conn.execute(_LOCK, (GUARD_KEY,))
        self.held = True
        self.on_change()
        # Nothing arrives here (this connection LISTENs to nothing): the wait only
        # notices the connection dying, which releases the key in PostgreSQL.
        async for _ in self.conn.notifies():
            pass
