"""Resume and replay: a subscription gets every event after `since`, then live ones, no gap.

This is where docs/guarantees.md's no-gap promise is kept. Subscribing with
`since` sends `subscribed`, then replays the events the client missed, from
the hub's memory when it still holds them or else from the event log, in
position order, and then makes the subscription live. The replay loop ends
on a check of the hub's cursor (`pos >= hub.cursor`), and `hub.subscribe`
follows that check with no await in between: the reader cannot publish an
event between the last replayed position and the first live one, so none
is lost and none is sent twice. Where no gap can be proven (the position
is malformed, forged or from another database (hub.parse, positions.py),
expired from the log, past what this daemon has
read after a short wait, or the client missed more than --replay-limit
events) the client gets a `resync` instead, never a silent gap.

A position that another daemon gave out may be ahead of this daemon's
cursor: the resume waits (at most CURSOR_WAIT seconds) for the reader to
get there, waking it rather than polling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Generic

import psycopg

from . import log, protocol
from .hub import Hub
from .listener import Listener
from .metrics import Metrics
from .session import P, Session

logger = logging.getLogger(__name__)

REPLAY_STALL = 10.0
"""Seconds a replayed frame may wait for room in the client's buffer before 4008."""
CURSOR_WAIT = 5.0
"""Seconds a resume waits for this daemon to read up to another daemon's position."""


class Replay(Generic[P]):
    """Brings a subscription from its `since` to live, through memory or the log."""

    def __init__(self, hub: Hub[Session[P]], listener: Listener, metrics: Metrics,
                 replay_limit: int):
        self.hub = hub
        self.listener = listener
        self.metrics = metrics
        self.replay_limit = replay_limit
        self.cursor_waiters: list[tuple[log.Pos, asyncio.Future[None]]] = []
        # Resumes that miss the hub's memory share one connection (opened on first
        # use), so a burst of reconnecting clients is not a burst of connections.
        self.conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()

    async def attach(self, session: Session[P], channel: str, since: str | None) -> None:
        """Send `subscribed`, replay what `since` missed, then go live, with no gap."""
        hub = self.hub
        db_id = hub.db_id
        pos = hub.cursor if since is None else hub.parse(since, db_id)
        if pos is not None and pos > hub.cursor:
            pos = await self._wait_cursor(pos)
        if pos is None:
            session.write(protocol.subscribed_frame(channel, hub.position(hub.cursor)))
            self.resync(session, channel, "unknown position")
            hub.subscribe(session, channel)
            return
        session.write(protocol.subscribed_frame(channel, hub.position(pos)))
        if await self._replay(session, channel, pos, db_id):
            # No await between _replay's last `pos >= hub.cursor` and this line.
            hub.subscribe(session, channel)

    async def _replay(self, session: Session[P], channel: str, pos: log.Pos,
                      db_id: str) -> bool:
        """Replay (pos, cursor] in steps until caught up; False: the session must not go live."""
        hub = self.hub
        replayed = 0
        while not session.closing:
            if hub.db_id != db_id:  # replaced while we awaited: pos means nothing now
                self.resync(session, channel, "database replaced")
                break
            if pos >= hub.cursor:
                break
            upto = hub.cursor
            frames: list[bytes] | None
            if hub.remembers(pos):
                frames = hub.replay(channel, pos)
            else:
                try:
                    frames = await self._from_log(channel, pos, upto)
                except (psycopg.Error, OSError) as exc:
                    logger.warning("cannot replay from the log: %s", " ".join(str(exc).split()))
                    session.close(1011, "the event log is unreachable: reconnect later")
                    return False
                if frames is None:
                    self.resync(session, channel, "position expired")
                    break
            replayed += len(frames)
            if replayed > self.replay_limit:
                self.resync(session, channel, "too many events missed")
                break
            if not await self._send(session, frames):
                return False
            pos = upto
        return not session.closing and channel in session.channels

    async def _from_log(self, channel: str, pos: log.Pos, upto: log.Pos) -> list[bytes] | None:
        """Frames from the database for (pos, upto]; None when pos was pruned.

        The prune mark is read after the rows: a prune that committed before the
        read shows in it, one that committed after it deleted nothing we read.
        """
        async with self._lock:
            for attempt in (1, 2):  # the kept connection may have died since its last use
                if self.conn is None or self.conn.closed:
                    self.conn = await self.listener.connect()
                conn = self.conn
                try:
                    events = await log.read_channel(conn, channel, pos, upto,
                                                    self.replay_limit + 1)
                    expired = log.expired(pos, await log.pruned_through(conn))
                    break
                except (psycopg.OperationalError, OSError):
                    self.conn = None
                    await conn.close()
                    if attempt == 2:
                        raise
        if expired:
            return None
        return [f for e in events if (f := self.hub.frame_for(channel, e))]

    async def _send(self, session: Session[P], frames: list[bytes]) -> bool:
        """Send with backpressure; a client that stalls is closed as too slow."""
        try:
            for frame in frames:
                await asyncio.wait_for(session.peer.send(frame), REPLAY_STALL)
        except asyncio.TimeoutError:
            session.too_slow()
            return False
        self.metrics.frames_sent.labels(endpoint=session.endpoint).inc(len(frames))
        return True

    def resync(self, session: Session[P], channel: str, reason: str) -> None:
        self.metrics.resyncs.labels(reason=reason).inc()
        session.write(protocol.resync_frame(channel, self.hub.position(self.hub.cursor), reason))

    async def _wait_cursor(self, pos: log.Pos) -> log.Pos | None:
        """Wait (briefly) for this daemon to read up to a position another daemon gave out."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.cursor_waiters.append((pos, future))
        self.listener.wake()
        try:
            await asyncio.wait_for(future, CURSOR_WAIT)
        except asyncio.TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                self.cursor_waiters.remove((pos, future))
        return pos

    def cursor_moved(self) -> None:
        """The reader published up to hub.cursor: wake the resumes waiting for it."""
        for pos, future in self.cursor_waiters:
            if pos <= self.hub.cursor and not future.done():
                future.set_result(None)

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()
