"""Who is subscribed to what, and what each change means for them. Pure state, no I/O.

The reader publishes committed events here in position order; the hub
serializes each event once and says which clients get that frame, which
legacy clients owe an `updated`, and which row channels must resync after a
TRUNCATE. It also keeps the most recent events in memory so that most
resumes (a reconnect, a rolling restart) are served without a query.

Clients are opaque hashable objects: the server owns the sockets.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from . import channels, protocol
from .log import ORIGIN, Event, Pos
from .positions import Positions

C = TypeVar("C", bound=Hashable)


@dataclass
class Delivery(Generic[C]):
    """One frame and the clients that get it."""

    frame: bytes
    clients: list[C]


@dataclass
class Batch(Generic[C]):
    """What publishing a run of events means for the clients."""

    deliveries: list[Delivery[C]] = field(default_factory=list)
    legacy: set[C] = field(default_factory=set)
    events: int = 0
    truncate_resyncs: int = 0


class Hub(Generic[C]):
    """Channel subscriptions, the read cursor, and a window of recent events."""

    def __init__(self, db_id: str, memory_events: int = 10000,
                 positions: Positions | None = None):
        self.db_id = db_id
        self.positions = positions or Positions.ephemeral()
        self.cursor: Pos = ORIGIN
        self.watched: dict[str, str | None] = {}
        self._memory_events = max(memory_events, 0)
        self._recent: list[Event] = []
        self._floor: Pos = ORIGIN
        self._v1: dict[str, set[C]] = {}
        self._legacy: dict[str, set[C]] = {}
        self._row_channels: dict[str, set[str]] = {}

    # -- positions and memory -------------------------------------------------

    def position(self, pos: Pos) -> str:
        """The opaque string a client gets for `pos` (bridge/positions.py)."""
        return self.positions.encode(self.db_id, pos)

    def parse(self, text: object, db_id: str | None = None) -> Pos | None:
        """The log position a client's string stands for, or None (answered with a resync)."""
        return self.positions.decode(text, self.db_id if db_id is None else db_id)

    def start(self, cursor: Pos, recent: Iterable[Event] = ()) -> None:
        """Set the cursor (after a start or a gap too large to replay) and warm the memory."""
        self._recent = [self._framed(e) for e in recent if e.pos <= cursor]
        self._recent = self._recent[-self._memory_events:] if self._memory_events else []
        self.cursor = cursor
        self._floor = self._recent[0].pos if self._recent else cursor

    def remembers(self, since: Pos) -> bool:
        """Whether every event after `since` up to the cursor is in memory."""
        return since >= self._floor

    def forget_through(self, tick: int) -> None:
        """Drop the events of ticks up to `tick` (pruned from the log).

        A position in a pruned tick then gets the same answer from every
        daemon (a resync), not a replay from whichever still remembers it.
        """
        floor = (tick + 1, 0)
        if tick <= 0 or self._floor >= floor:
            return
        start = bisect.bisect_left(self._recent, floor, key=lambda e: e.pos)
        del self._recent[:start]
        self._floor = floor

    def replay(self, channel: str, since: Pos) -> list[bytes]:
        """Frames of `channel` after `since` up to the cursor, from memory (see remembers())."""
        start = bisect.bisect_right(self._recent, since, key=lambda e: e.pos)
        return [f for e in self._recent[start:] if (f := self.frame_for(channel, e))]

    def frame_for(self, channel: str, event: Event) -> bytes | None:
        """The frame a subscriber of `channel` gets for `event`, if any."""
        if event.channel == channel:
            return event.frame or self._framed(event).frame
        if event.op == "TRUNCATE" and channel.partition(":")[0] == event.channel != channel:
            return protocol.resync_frame(channel, self.position(event.pos), "truncate")
        return None

    def exists(self, channel: str) -> bool:
        """Whether `channel` names a watched table, or a row channel of its channel column."""
        parsed = channels.parse(channel)
        if parsed.base not in self.watched:
            return False
        return parsed.column is None or parsed.column == self.watched[parsed.base]

    # -- subscriptions --------------------------------------------------------

    def subscribe(self, client: C, channel: str) -> None:
        self._v1.setdefault(channel, set()).add(client)
        self._track_row_channel(channel)

    def subscribe_legacy(self, client: C, chans: Iterable[str]) -> None:
        for channel in chans:
            self._legacy.setdefault(channel, set()).add(client)
            self._track_row_channel(channel)

    def unsubscribe(self, client: C, channel: str) -> None:
        for table in (self._v1, self._legacy):
            subs = table.get(channel)
            if subs is not None:
                subs.discard(client)
                if not subs:
                    del table[channel]
        self._untrack_row_channel(channel)

    def subscribers(self, channel: str) -> int:
        return len(self._v1.get(channel, ())) + len(self._legacy.get(channel, ()))

    def channel_counts(self) -> dict[str, int]:
        """Subscribers per channel (v1 and legacy together)."""
        names = set(self._v1) | set(self._legacy)
        return {name: self.subscribers(name) for name in names}

    # -- publishing -----------------------------------------------------------

    def publish(self, events: Iterable[Event]) -> Batch[C]:
        """Advance the cursor over events (in position order) and say who gets what."""
        batch: Batch[C] = Batch()
        for event in events:
            if event.pos <= self.cursor:
                continue
            self._framed(event)
            self.cursor = event.pos
            self._remember(event)
            batch.events += 1
            subs = self._v1.get(event.channel)
            if subs:
                batch.deliveries.append(Delivery(event.frame, list(subs)))
            legacy = self._legacy.get(event.channel)
            if legacy:
                batch.legacy.update(legacy)
            if event.op == "TRUNCATE":
                self._truncate_row_channels(event, batch)
        return batch

    def resync_all(self, cursor: Pos, reason: str) -> Batch[C]:
        """Jump to `cursor` and tell every subscriber to refetch (a gap too large to replay)."""
        self.start(cursor)
        batch: Batch[C] = Batch()
        position = self.position(cursor)
        for channel, subs in self._v1.items():
            batch.deliveries.append(
                Delivery(protocol.resync_frame(channel, position, reason), list(subs))
            )
        for subs in self._legacy.values():
            batch.legacy.update(subs)
        return batch

    def _truncate_row_channels(self, event: Event, batch: Batch[C]) -> None:
        position = self.position(event.pos)
        for row_channel in self._row_channels.get(event.channel, ()):
            subs = self._v1.get(row_channel)
            if subs:
                frame = protocol.resync_frame(row_channel, position, "truncate")
                batch.truncate_resyncs += len(subs)
                batch.deliveries.append(Delivery(frame, list(subs)))
            batch.legacy.update(self._legacy.get(row_channel, ()))

    def _framed(self, event: Event) -> Event:
        if not event.frame:
            event.frame = protocol.event_frame(
                event.channel, self.position(event.pos), event.table, event.op, event.pks,
                event.count,
            )
        return event

    def _remember(self, event: Event) -> None:
        if not self._memory_events:
            self._floor = event.pos
            return
        self._recent.append(event)
        if len(self._recent) >= 2 * self._memory_events:
            del self._recent[: len(self._recent) - self._memory_events]
            self._floor = self._recent[0].pos

    def _track_row_channel(self, channel: str) -> None:
        base, sep, _ = channel.partition(":")
        if sep:
            self._row_channels.setdefault(base, set()).add(channel)

    def _untrack_row_channel(self, channel: str) -> None:
        base, sep, _ = channel.partition(":")
        if sep and channel not in self._v1 and channel not in self._legacy:
            names = self._row_channels.get(base)
            if names is not None:
                names.discard(channel)
                if not names:
                    del self._row_channels[base]


class Throttle:
    """Token bucket for legacy `updated` frames: polling's budget, spent when it matters.

    Each send spends a token; tokens come back at one per `window`, up to
    `burst`. While a token is left a change goes out at once; with none left,
    every change folds into ONE owed send when the next token arrives. So it
    is never one send per row.

    A fresh bucket holds one token, spent by the first send (the page's first
    load), so in the t seconds after it there are at most 1 + t/window sends:
    never more refetches than polling once per window from the same moment.
    What polling would have spent while nothing changed is saved, up to
    `burst`, so the changes that follow a quiet spell go out at once instead
    of waiting for a window's end.

    Why a bucket and not a plain window: at one change per window with random
    arrivals, a strict leading-edge window held about 63% of changes until its
    end (p50 staleness ~0.5 s, issue 7). burst=1 is exactly the old
    leading-edge window.

    The caller asks with hit() and reports every send it makes with fired(),
    the one right after connect included: only a send that went out spends a
    token, so an owed send that had to wait (defer) is not paid for twice.
    """

    __slots__ = ("burst", "pending", "stamp", "tokens", "window")

    def __init__(self, window: float, burst: int = 3):
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.window = window
        self.burst = burst
        self.tokens = 1.0  # the first load's
        self.stamp: float | None = None  # when tokens was last brought up to date
        self.pending = False  # a send is owed and scheduled by the caller

    def _refill(self, now: float) -> None:
        """Bring the tokens up to `now`: elapsed / window of them, capped at burst."""
        if self.window <= 0:  # no window: never throttled
            self.tokens = float(self.burst)
        elif self.stamp is not None and now > self.stamp:
            self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) / self.window)
        self.stamp = now if self.stamp is None else max(self.stamp, now)

    def hit(self, now: float) -> float | None:
        """0.0: send now; a positive delay: send then (schedule it); None: already scheduled.

        Asking spends nothing: the caller reports the send it makes with fired().
        """
        if self.pending:
            return None
        self._refill(now)
        if self.tokens >= 1:
            return 0.0
        self.pending = True
        return (1 - self.tokens) * self.window

    def defer(self) -> None:
        """The owed send could not go out yet: it stays owed, scheduled again by the caller."""
        self.pending = True

    def fired(self, now: float) -> None:
        """A send went out at `now`: it spends a token and pays off what was owed.

        A scheduled send may run a hair before its token is whole (the event
        loop runs timers up to its clock resolution early); the debt is kept,
        not forgiven, so the burst + t/window bound holds.
        """
        self._refill(now)
        self.tokens -= 1
        self.pending = False
