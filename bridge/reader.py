"""The log reader: stamps committed rows into positions and publishes them to the hub.

NOTIFY is only a wake-up. Whatever woke it (a notification, a reconnect, a
merged or lost notification), the reader stamps, then reads the log from its
own cursor, so an event can be late but never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg

from . import log
from .hub import Batch, Hub
from .metrics import Metrics

logger = logging.getLogger("bridge.reader")

BATCH_ROWS = 1000
PRUNE_EVERY = 60.0


class Reader:
    """Moves the hub's cursor over the log; one per daemon, driven by the listener."""

    def __init__(
        self,
        hub: Hub[Any],
        deliver: Callable[[Batch[Any]], None],
        metrics: Metrics,
        *,
        retention: float,
        replay_limit: int,
        memory_events: int,
    ):
        self.hub = hub
        self.deliver = deliver
        self.metrics = metrics
        self.retention = retention
        self.replay_limit = replay_limit
        self.memory_events = memory_events
        self.started = False
        self.reload_watched = True
        self._last_prune = 0.0
        # When the last complete read began, and whether the cursor ends a
        # whole tick (a read stopped at BATCH_ROWS may end inside one): a
        # reader that has not read for half the retention checks, after its
        # next read, that no tick after its cursor was pruned meanwhile.
        self._read_at = time.monotonic()
        self._whole_tick = True
        self._check_pruned = False

    async def start(self, conn: psycopg.AsyncConnection) -> None:
        """On each (re)connection: check the schema, then place or check the cursor."""
        meta = await log.meta(conn)
        db_id = meta["db_id"]
        self.hub.watched = await log.watched(conn)
        self.reload_watched = False
        if not self.started:
            self.hub.db_id = db_id
            self._read_at = time.monotonic()
            await log.stamp(conn)
            head = await log.head(conn)
            self.hub.start(head, await log.read_last(conn, self.memory_events))
            self.started = True
            logger.info("reader starts at %s", log.describe(db_id, head))
            return
        if db_id == self.hub.db_id and await log.last_tick(conn) < self.hub.cursor[0]:
            # Same db_id, but ticks went back: a restore or a failover to a standby
            # that had not seen our last ticks. New ticks would reuse old numbers,
            # so no position handed out before can be trusted: retire them all.
            db_id = await log.rotate_db_id(conn, db_id)
        if db_id != self.hub.db_id:
            logger.warning("the database was replaced (db_id %s -> %s): resync", self.hub.db_id,
                           db_id)
            self.hub.db_id = db_id
            await log.stamp(conn)
            self._resync_all(await log.head(conn), "database replaced")
            return
        self._check_pruned = True
        await self._skip_gap_if_too_large(conn)

    async def catch_up(self, conn: psycopg.AsyncConnection) -> int:
        """Stamp, then publish every committed event after the cursor; returns how many."""
        if self.reload_watched:
            self.reload_watched = False
            self.hub.watched = await log.watched(conn)
        total, full = await self._stamp_and_read(conn)
        while full:  # the tick was cut at its size limit: more rows wait for the next one
            read, full = await self._stamp_and_read(conn)
            total += read
        await self._maybe_prune(conn)
        return total

    async def _stamp_and_read(self, conn: psycopg.AsyncConnection) -> tuple[int, bool]:
        """Cut a tick and publish everything after the cursor: (events, was a tick full).

        The first read also stamps (log.advance: one round trip); later batches
        only read. A tick of STAMP_ROWS rows means stamping stopped at its cap.
        """
        check = self._check_pruned or time.monotonic() - self._read_at > self.retention / 2
        total = 0
        first = True
        last_tick, last_tick_rows = -1, 0
        while True:
            started = time.monotonic()
            before = self.hub.cursor
            if first:
                events = await log.advance(conn, before, BATCH_ROWS)
                first = False
            else:
                events = await log.read_after(conn, before, BATCH_ROWS)
            if check:
                # After the read, not before: a prune that committed before the
                # read's snapshot shows here, one after it deleted nothing we read.
                check = self._check_pruned = False
                if self._missed(before, await log.pruned_through(conn)):
                    self._resync_all(await log.head(conn), "log pruned before it was read")
                    continue
            self._whole_tick = len(events) < BATCH_ROWS
            for event in events:
                if event.pos[0] == last_tick:
                    last_tick_rows += 1
                else:
                    last_tick, last_tick_rows = event.pos[0], 1
            if events:
                batch = self.hub.publish(events)
                total += batch.events
                self.metrics.events_read.inc(batch.events)
                self.metrics.cursor_tick.set(self.hub.cursor[0])
                self.deliver(batch)
            if self._whole_tick:
                self._read_at = started
                break
        return total, last_tick_rows >= log.STAMP_ROWS

    def _missed(self, cursor: log.Pos, pruned_through: int) -> bool:
        """Whether pruning deleted rows after `cursor` (ticks are deleted whole)."""
        if cursor[0] == pruned_through:
            return not self._whole_tick
        return cursor[0] < pruned_through

    async def _skip_gap_if_too_large(self, conn: psycopg.AsyncConnection) -> None:
        """After a reconnect: replay what was missed, unless it is more than replay_limit.

        Rows pruned while disconnected are caught by the next catch_up's check.
        """
        await log.stamp(conn)
        if await log.count_after(conn, self.hub.cursor, self.replay_limit + 1) > self.replay_limit:
            self._resync_all(await log.head(conn), "too many events missed while disconnected")

    def _resync_all(self, head: log.Pos, reason: str) -> None:
        batch = self.hub.resync_all(head, reason)
        self._whole_tick = True
        self.metrics.resyncs.labels(reason="gap").inc(sum(len(d.clients) for d in batch.deliveries))
        self.deliver(batch)

    async def _maybe_prune(self, conn: psycopg.AsyncConnection) -> None:
        now = time.monotonic()
        if now - self._last_prune < min(PRUNE_EVERY, self.retention / 10):
            return
        self._last_prune = now
        deleted = await log.prune(conn, self.retention)
        if deleted:
            logger.info("pruned %d log rows older than %ss", deleted, self.retention)
        # Whichever daemon pruned, forget those ticks, so that every daemon
        # answers a resume from a pruned position alike: with a resync.
        self.hub.forget_through(await log.pruned_through(conn))
