"""One client's state and rules, with no socket: auth, subscriptions, refusals, close codes.

A Session is what the daemon knows about one WebSocket connection and the
rules it follows: the token and its deadline (4001), subscribe and
unsubscribe within the grant, refusals and the bad-message budget (4003,
4029), the legacy client's throttle, and the slow-consumer close (4008). It
never touches a socket: it is handed a `Peer` that can send (waiting for
room) and close, and the shared `Rules` hold the function that writes a
frame without waiting, so tests/test_session.py checks every rule with a
recording peer, the way hub.py and protocol.py are tested.

What a subscription replays before it goes live is replay.py's job; how
frames reach sockets is fanout.py's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from . import channels, protocol
from .auth import Grant, TokenError, Verifier
from .hub import Hub, Throttle
from .metrics import Metrics

logger = logging.getLogger(__name__)

V1, LEGACY = "v1", "legacy"


class Peer(Protocol):
    """What a session needs of its connection."""

    async def send(self, frame: bytes) -> None:
        """Send one text frame, waiting while the connection's buffer is full."""

    def close(self, code: int, reason: str) -> None:
        """Start closing the connection; returns at once."""


P = TypeVar("P", bound=Peer)


@dataclass(frozen=True)
class Limits:
    """The per-connection limits of the configuration (docs/protocol.md, "Limits")."""

    auth_timeout: float
    max_subscriptions: int
    max_bad_messages: int
    legacy_window: float
    legacy_burst: int


@dataclass(frozen=True)
class Rules(Generic[P]):
    """What every session shares: the hub, the verifier, the limits and the I/O it is handed.

    `write` queues a frame without waiting (fanout.py's slow-consumer check
    included); `attach` replays what a subscription missed and then makes it
    live (replay.py).
    """

    hub: Hub[Session[P]]
    verifier: Verifier
    metrics: Metrics
    limits: Limits
    anonymous: frozenset[str]
    write: Callable[[Session[P], bytes], None]
    attach: Callable[[Session[P], str, str | None], Awaitable[None]]
    connected: asyncio.Event
    """Set once the listener has read the watched tables: only then can a name be judged."""


class Session(Generic[P]):
    """One connection's grant, subscriptions and budget, and the rules it is held to."""

    def __init__(self, peer: P, endpoint: str, address: str, grant: Grant | None,
                 rules: Rules[P]):
        self.peer = peer
        self.endpoint = endpoint
        self.address = address
        self.grant = grant
        self.rules = rules
        self.channels: set[str] = set()
        self.refused: set[str] = set()
        self.bad: deque[float] = deque()
        self.throttle: Throttle | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.closing = False

    def __repr__(self) -> str:
        return f"<Session {self.endpoint} {self.address} {len(self.channels)} channels>"

    # -- start and input ----------------------------------------------------------

    def start(self, legacy_channels: tuple[str, ...] = ()) -> None:
        """Begin: a legacy client gets its first `updated`, a /v1 one its auth deadline."""
        rules = self.rules
        loop = asyncio.get_running_loop()
        if self.endpoint == LEGACY:
            self.throttle = Throttle(rules.limits.legacy_window, rules.limits.legacy_burst)
            self.channels = set(legacy_channels)
            rules.hub.subscribe_legacy(self, legacy_channels)
            self.throttle.fired(loop.time())  # this one spends a token too
            self.write(protocol.LEGACY_UPDATED)
        elif self.grant is None and not rules.anonymous:
            self.timer = loop.call_later(rules.limits.auth_timeout, self.auth_deadline)

    async def receive(self, data: str | bytes) -> None:
        """Act on one message from the client."""
        if self.endpoint == LEGACY:
            if data != "success":  # the original snippet's ack; anything else asks again
                self.write(protocol.LEGACY_UPDATED)
            return
        try:
            message = protocol.parse(data)
        except protocol.ProtocolError as exc:
            self.bad_message(exc)
            return
        if isinstance(message, protocol.Ping):
            self.write(protocol.PONG)
        elif isinstance(message, protocol.Auth):
            self.authenticate(message.token)
        elif isinstance(message, protocol.Subscribe):
            await self.subscribe(message.channel, message.since)
        elif isinstance(message, protocol.Unsubscribe):
            self.rules.hub.unsubscribe(self, message.channel)
            self.channels.discard(message.channel)

    # -- auth ---------------------------------------------------------------------

    def auth_deadline(self) -> None:
        self.timer = None
        self.rules.metrics.auth_failures.labels(reason="timeout").inc()
        logger.info("closing a client that did not authenticate in time (%s)", self.address)
        self.close(protocol.CLOSE_UNAUTHORIZED,
                   "authenticate first: send an auth message with a token")

    def authenticate(self, token: str) -> None:
        """Take a new token: channels it no longer grants are dropped, each with an error."""
        rules = self.rules
        try:
            grant = rules.verifier.verify(token)
        except TokenError as exc:
            rules.metrics.auth_failures.labels(reason="token").inc()
            logger.info("refused a token from %s: %s", self.address, exc)
            self.close(protocol.CLOSE_UNAUTHORIZED, str(exc))
            return
        self.grant = grant
        self.refused.clear()  # asked before the token arrived: not "asked again"
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for channel in [c for c in self.channels if not self.allowed(c)]:
            rules.hub.unsubscribe(self, channel)
            self.channels.discard(channel)
            self.write(protocol.error_frame(protocol.FORBIDDEN,
                                            "the new token does not grant this channel",
                                            channel))
        self.write(protocol.authenticated_frame(sorted(grant.channels | rules.anonymous)))

    def allowed(self, channel: str) -> bool:
        if channels.granted(self.rules.anonymous, channel):
            return True
        return self.grant is not None and self.grant.covers(channel)

    # -- subscriptions ------------------------------------------------------------

    async def subscribe(self, channel: str, since: str | None) -> None:
        """Subscribe within the grant and the limit, then let replay.py attach it."""
        rules = self.rules
        await rules.connected.wait()
        if not self.allowed(channel) or not rules.hub.exists(channel):
            self._refuse(channel)
            return
        if channel in self.channels:
            rules.hub.unsubscribe(self, channel)
        elif len(self.channels) >= rules.limits.max_subscriptions:
            self.write(protocol.error_frame(
                protocol.TOO_MANY_SUBSCRIPTIONS,
                f"at most {rules.limits.max_subscriptions} subscriptions per connection",
                channel))
            return
        self.channels.add(channel)
        await rules.attach(self, channel, since)

    def _refuse(self, channel: str) -> None:
        """Refusals count as bad messages, so probing names costs a 4029.

        The set of refused names stays as small as the bad-message budget, and
        asking again for a refused name closes with 4003.
        """
        if self.grant is None:  # not anonymous, and no token yet: same for any name
            self.bad_message(protocol.ProtocolError(
                protocol.UNAUTHORIZED, "authenticate first: send an auth message"), channel)
            return
        if channel in self.refused:
            self.close(protocol.CLOSE_FORBIDDEN, "forbidden channel asked again")
            return
        self.refused.add(channel)
        self.rules.metrics.auth_failures.labels(reason="forbidden").inc()
        self.bad_message(protocol.ProtocolError(
            protocol.FORBIDDEN, "channel not granted or does not exist"), channel)

    def bad_message(self, exc: protocol.ProtocolError, channel: str | None = None) -> None:
        """Answer with an error frame; past the budget in a minute, close with 4029."""
        self.rules.metrics.bad_messages.labels(code=exc.code).inc()
        now = time.monotonic()
        self.bad.append(now)
        while self.bad and self.bad[0] < now - 60:
            self.bad.popleft()
        if len(self.bad) > self.rules.limits.max_bad_messages:
            self.close(protocol.CLOSE_TOO_MANY_BAD, "too many bad messages")
            return
        self.write(protocol.error_frame(exc.code, exc.message, channel))

    # -- output and the end -------------------------------------------------------

    def write(self, frame: bytes) -> None:
        """Queue one frame for this client, in order, without waiting."""
        self.rules.write(self, frame)

    def too_slow(self) -> None:
        self.rules.metrics.slow_closes.inc()
        logger.info("closing a client that stopped reading (%s, %d subscriptions)",
                    self.address, len(self.channels))
        self.close(protocol.CLOSE_TOO_SLOW, "too slow: resume from your last position")

    def close(self, code: int, reason: str) -> None:
        """Stop sending to this client at once, then close its connection."""
        if self.closing:
            return
        self.closing = True
        self.drop_subscriptions()
        self.peer.close(code, reason[:120])

    def drop_subscriptions(self) -> None:
        for channel in self.channels:
            self.rules.hub.unsubscribe(self, channel)
        self.channels.clear()

    def forget(self) -> None:
        """The connection ended: leave every channel, cancel any timer."""
        self.drop_subscriptions()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
