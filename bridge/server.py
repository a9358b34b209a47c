"""The WebSocket and HTTP side of the daemon: one handler per connection.

This module wires sockets to the pure parts: frames go through protocol.py,
subscriptions and fan-out through hub.py, tokens through auth.py. Writes to
clients are synchronous (websockets' broadcast()), so frames keep the order
in which the hub produced them; a client whose write buffer passes
--max-client-buffer is closed with 4008 instead of slowing anyone down, and
resumes from its last position.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
import ssl
import time
import weakref
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import psycopg
from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.frames import Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State

from . import __version__, channels, log, protocol
from .auth import Grant, TokenError, Verifier, cookie_token, origin_allowed
from .config import Config, require
from .hub import Batch, Hub, Throttle
from .listener import APPLICATION_NAME, Listener
from .metrics import CONTENT_TYPE_LATEST, LogStats, Metrics, fold_channel
from .reader import Reader

logger = logging.getLogger("bridge.server")

V1, LEGACY = "v1", "legacy"
REPLAY_STALL = 10.0
CURSOR_WAIT = 5.0
LOG_STATS_EVERY = 5.0
LOG_STATS_TIMEOUT = 3.0


@dataclass(eq=False)
class Client:
    """One WebSocket connection and what it may and does receive."""

    ws: ServerConnection
    endpoint: str
    address: str
    grant: Grant | None = None
    channels: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    bad: deque[float] = field(default_factory=deque)
    throttle: Throttle | None = None
    timer: asyncio.TimerHandle | None = None
    closing: asyncio.Task[None] | None = None


@dataclass
class Handshake:
    """What process_request learned about a connection before it was accepted."""

    address: str
    grant: Grant | None
    legacy_channels: tuple[str, ...] = ()


class _FramesUnlogged(logging.LoggerAdapter):
    """websockets' logger with DEBUG switched off.

    At DEBUG, websockets logs every request header and every frame, and those
    carry tokens (the bridge_token cookie, the auth message), along with
    tracebacks for each malformed handshake. Its INFO and above still flow.
    """

    def isEnabledFor(self, level: int) -> bool:
        return level > logging.DEBUG and self.logger.isEnabledFor(level)


_WEBSOCKETS_LOGGER = _FramesUnlogged(logging.getLogger("websockets.server"), {})


class Daemon:
    """The bridge daemon: database listener, hub, and WebSocket server."""

    def __init__(self, config: Config):
        require(config, "database_url")
        self.config = config
        self.metrics = Metrics()
        self.verifier = Verifier(config.secret_key, config.secret_key_fallbacks,
                                 config.token_max_age)
        self.anonymous = frozenset(config.allow_anonymous)
        self.hub: Hub[Client] = Hub("", config.memory_events)
        self.reader = Reader(self.hub, self.deliver, self.metrics, retention=config.retention,
                             replay_limit=config.replay_limit,
                             memory_events=config.memory_events)
        self.listener = Listener(str(config.database_url), self.reader, self.metrics,
                                 instance=f"{socket.gethostname()}:{config.port}")
        self.metrics.watch_subscriptions(self._subscription_counts)
        self.draining = False
        self._log_stats_at = -math.inf
        self._log_stats_lock = asyncio.Lock()
        self.clients: set[Client] = set()
        self._per_address: Counter[str] = Counter()
        # Weak: a handshake that process_request accepted can still fail (a plain GET,
        # a bad Sec-WebSocket-Key) and never reach _handler; its entry must not stay.
        self._handshakes: weakref.WeakKeyDictionary[ServerConnection, Handshake] = (
            weakref.WeakKeyDictionary())
        self._cursor_waiters: list[tuple[log.Pos, asyncio.Future[None]]] = []
        # Resumes that miss the hub's memory share one connection (opened on first
        # use), so a burst of reconnecting clients is not a burst of connections.
        self._replay_conn: psycopg.AsyncConnection | None = None
        self._replay_lock = asyncio.Lock()
        self._server: Server | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._metrics_server: Any = None

    # -- lifecycle --------------------------------------------------------------

    async def start(self) -> None:
        """Start listening to the database and serving clients (returns once bound)."""
        cfg = self.config
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self._process_request,
            max_size=cfg.max_frame_size,
            max_queue=16,
            compression="deflate" if cfg.compression else None,
            ping_interval=cfg.ping_interval or None,
            ping_timeout=cfg.ping_interval or None,
            open_timeout=cfg.handshake_timeout,
            close_timeout=2,
            ssl=self._ssl_context(),
            server_header="pg-notify-bridge",
            logger=_WEBSOCKETS_LOGGER,
        )
        # Named after the bound port (--port 0 picks one), so `status` tells daemons apart.
        self.listener.application_name = self._instance_name()
        self.metrics.info.clear()
        self.metrics.info.labels(version=__version__,
                                 instance=self.listener.application_name).set(1)
        self._listener_task = asyncio.create_task(self.listener.run(), name="listener")
        if cfg.metrics_port is not None:
            # Loopback only, and only /metrics, /healthz and /readyz: every request
            # gets an HTTP answer, so no WebSocket is ever opened on this port.
            self._metrics_server = await serve(
                _no_websocket, "127.0.0.1", cfg.metrics_port,
                process_request=self._process_metrics_request, server_header="pg-notify-bridge",
            )
            logger.info("serving /metrics on http://127.0.0.1:%d/metrics", self.metrics_port)
        logger.info("serving ws%s://%s:%d/v1 and legacy /", "s" if cfg.tls_cert else "",
                    cfg.host, self.port)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.sockets[0].getsockname()[1])

    def _instance_name(self) -> str:
        return f"{APPLICATION_NAME} {socket.gethostname()}:{self.port}"[:63]

    @property
    def metrics_port(self) -> int | None:
        """The bound --metrics-port (None without one)."""
        if self._metrics_server is None:
            return None
        return int(self._metrics_server.sockets[0].getsockname()[1])

    async def wait(self) -> None:
        """Wait until the listener fails for good (no schema at start) or the server closes."""
        assert self._server is not None and self._listener_task is not None
        closed = asyncio.create_task(self._server.wait_closed())
        await asyncio.wait({closed, self._listener_task}, return_when=asyncio.FIRST_COMPLETED)
        closed.cancel()
        if self._listener_task.done() and not self._listener_task.cancelled():
            self._listener_task.result()

    async def stop(self) -> None:
        """Stop accepting, close clients with 1001 so they resume elsewhere, drop the database."""
        self.draining = True
        if self._server is not None:
            self._server.close(close_connections=True)
            try:
                await asyncio.wait_for(self._server.wait_closed(), self.config.drain_seconds)
            except asyncio.TimeoutError:
                logger.warning("%d clients did not close within --drain-seconds %g: cutting them",
                               len(self.clients), self.config.drain_seconds)
                for client in list(self.clients):
                    if client.ws.transport is not None:
                        client.ws.transport.abort()
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener_task
        if self._replay_conn is not None:
            await self._replay_conn.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._metrics_server.wait_closed(), 2)

    # -- HTTP and handshake -----------------------------------------------------

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path in ("/healthz", "/readyz") or (path == "/metrics"
                                               and self.config.metrics_port is None):
            return await self._plain_http(connection, path)
        if path not in ("/", "/v1"):
            return connection.respond(404, "not found: use /v1 (JSON) or / (legacy)\n")
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        if len(origins) > 1 or not origin_allowed(
            origins[0] if origins else None, hosts[0] if len(hosts) == 1 else None,
            self.config.allowed_origins,
        ):
            self.metrics.auth_failures.labels(reason="origin").inc()
            logger.info("refused origin %r from %s", ", ".join(origins)[:200],
                        self._client_address(connection, request))
            return connection.respond(403, "origin not allowed\n")
        address = self._client_address(connection, request)
        limit = self.config.max_connections_per_ip
        if limit and self._per_address[address] >= limit:
            return connection.respond(429, "too many connections from this address\n")
        grant: Grant | None = None
        token = cookie_token("; ".join(request.headers.get_all("Cookie")))
        if token is not None:
            try:
                grant = self.verifier.verify(token)
            except TokenError as exc:
                if path == "/":
                    self.metrics.auth_failures.labels(reason="token").inc()
                    return connection.respond(401, f"{exc}\n")
        handshake = Handshake(address, grant)
        if path == "/":
            handshake.legacy_channels = self._legacy_channels(grant)
            if not handshake.legacy_channels:
                self.metrics.auth_failures.labels(reason="no_token").inc()
                return connection.respond(401, "a bridge_token cookie is required\n")
        self._handshakes[connection] = handshake
        return None

    async def _process_metrics_request(self, connection: ServerConnection,
                                       request: Request) -> Response:
        """The --metrics-port server: /metrics, /healthz and /readyz, nothing else."""
        path = urlsplit(request.path).path
        if path in ("/metrics", "/healthz", "/readyz"):
            return await self._plain_http(connection, path)
        return connection.respond(404, "not found: this port serves /metrics, /healthz and"
                                  " /readyz\n")

    async def _plain_http(self, connection: ServerConnection, path: str) -> Response:
        if path == "/healthz":
            return connection.respond(200, "ok\n")
        if path == "/readyz":
            if self.draining:
                return connection.respond(503, "not ready: shutting down\n")
            if self.listener.ready.is_set():
                return connection.respond(200, "ready\n")
            return connection.respond(503, "not ready: the listener is not connected and"
                                      " caught up\n")
        await self._refresh_log_stats()
        response = connection.respond(200, self.metrics.render().decode())
        response.headers = Headers([*((k, v) for k, v in response.headers.raw_items()
                                      if k.lower() != "content-type"),
                                    ("Content-Type", CONTENT_TYPE_LATEST)])
        return response

    async def _refresh_log_stats(self) -> None:
        """Measure the log for /metrics; scrapes drive it, at most every LOG_STATS_EVERY s."""
        if time.monotonic() - self._log_stats_at < LOG_STATS_EVERY:
            return
        async with self._log_stats_lock:
            if time.monotonic() - self._log_stats_at < LOG_STATS_EVERY:
                return
            self._log_stats_at = time.monotonic()
            try:
                row = await asyncio.wait_for(self._read_log_stats(), LOG_STATS_TIMEOUT)
            except (psycopg.Error, OSError, asyncio.TimeoutError) as exc:
                logger.debug("cannot measure the log for /metrics: %s", exc)
                return
        size, rows, unstamped, tick, row_id, age, pruned = row
        self.metrics.set_log_stats(LogStats(int(size), int(rows), int(unstamped), tick, row_id,
                                            None if age is None else float(age),
                                            int(pruned or 0)))

    async def _read_log_stats(self) -> tuple[Any, ...]:
        async with await self.listener.connect() as conn:
            return await log.stats(conn)

    def _subscription_counts(self) -> dict[str, int]:
        """Subscribers per table channel (row channels folded in), for bridge_subscriptions."""
        counts: Counter[str] = Counter()
        for channel, n in self.hub.channel_counts().items():
            counts[fold_channel(channel, self.hub.watched)] += n
        return dict(counts)

    def _client_address(self, connection: ServerConnection, request: Request) -> str:
        peer = connection.remote_address[0] if connection.remote_address else "?"
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For"))
        if not forwarded or not self._trusted(peer):
            return str(peer)
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        for hop in reversed(hops):
            if not self._trusted(hop):
                return hop
        return hops[0] if hops else str(peer)

    def _trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in net for net in self.config.trusted_proxies)

    def _legacy_channels(self, grant: Grant | None) -> tuple[str, ...]:
        available = set(self.anonymous) | (set(grant.channels) if grant else set())
        legacy = set(self.config.legacy_channels)
        if not legacy:
            return tuple(sorted(available))
        # The intersection, either way round: a row grant inside a legacy table
        # channel stays (narrowed to that row channel), and so does a legacy row
        # channel inside a table grant.
        narrowed = {c for c in available if channels.granted(legacy, c)}
        narrowed |= {c for c in legacy if channels.granted(available, c)}
        return tuple(sorted(narrowed))

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    # -- connections ------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        handshake = self._handshakes.pop(ws, None)
        if handshake is None:  # pragma: no cover - process_request always records one
            await ws.close(1011, "internal error")
            return
        path = urlsplit(ws.request.path).path if ws.request is not None else "/v1"
        endpoint = LEGACY if path == "/" else V1
        _forget_handshake(ws)
        client = Client(ws, endpoint, handshake.address, handshake.grant)
        self.clients.add(client)
        self._per_address[client.address] += 1
        self.metrics.connections.labels(endpoint=endpoint).inc()
        try:
            if endpoint == LEGACY:
                await self._serve_legacy(client, handshake.legacy_channels)
            else:
                await self._serve_v1(client)
        except ConnectionClosed:
            pass
        finally:
            self._forget(client)

    def _forget(self, client: Client) -> None:
        if client not in self.clients:
            return
        self.clients.discard(client)
        self._per_address[client.address] -= 1
        if self._per_address[client.address] <= 0:
            del self._per_address[client.address]
        self.metrics.connections.labels(endpoint=client.endpoint).dec()
        self._drop_subscriptions(client)
        if client.timer is not None:
            client.timer.cancel()

    def _drop_subscriptions(self, client: Client) -> None:
        for channel in client.channels:
            self.hub.unsubscribe(client, channel)
        client.channels.clear()

    async def _serve_legacy(self, client: Client, chans: tuple[str, ...]) -> None:
        client.throttle = Throttle(self.config.legacy_window, self.config.legacy_burst)
        client.channels = set(chans)
        self.hub.subscribe_legacy(client, chans)
        client.throttle.fired(asyncio.get_running_loop().time())  # this one spends a token too
        self._write(client, protocol.LEGACY_UPDATED)
        async for message in client.ws:
            if message != "success":
                self._write(client, protocol.LEGACY_UPDATED)

    async def _serve_v1(self, client: Client) -> None:
        if client.grant is None and not self.anonymous:
            client.timer = asyncio.get_running_loop().call_later(
                self.config.auth_timeout, self._auth_deadline, client)
        async for data in client.ws:
            try:
                message = protocol.parse(data)
            except protocol.ProtocolError as exc:
                self._bad_message(client, exc)
                continue
            if isinstance(message, protocol.Ping):
                self._write(client, protocol.PONG)
            elif isinstance(message, protocol.Auth):
                self._authenticate(client, message.token)
            elif isinstance(message, protocol.Subscribe):
                await self._subscribe(client, message.channel, message.since)
            elif isinstance(message, protocol.Unsubscribe):
                self.hub.unsubscribe(client, message.channel)
                client.channels.discard(message.channel)
            if client.closing:
                await client.closing
                return

    def _auth_deadline(self, client: Client) -> None:
        self.metrics.auth_failures.labels(reason="timeout").inc()
        logger.info("closing a client that did not authenticate in time (%s)", client.address)
        self._close(client, protocol.CLOSE_UNAUTHORIZED,
                    "authenticate first: send an auth message with a token")

    def _bad_message(self, client: Client, exc: protocol.ProtocolError,
                     channel: str | None = None) -> None:
        self.metrics.bad_messages.labels(code=exc.code).inc()
        now = time.monotonic()
        client.bad.append(now)
        while client.bad and client.bad[0] < now - 60:
            client.bad.popleft()
        if len(client.bad) > self.config.max_bad_messages:
            self._close(client, protocol.CLOSE_TOO_MANY_BAD, "too many bad messages")
            return
        self._write(client, protocol.error_frame(exc.code, exc.message, channel))

    def _authenticate(self, client: Client, token: str) -> None:
        try:
            grant = self.verifier.verify(token)
        except TokenError as exc:
            self.metrics.auth_failures.labels(reason="token").inc()
            logger.info("refused a token from %s: %s", client.address, exc)
            self._close(client, protocol.CLOSE_UNAUTHORIZED, str(exc))
            return
        client.grant = grant
        client.refused.clear()  # asked before the token arrived: not "asked again"
        if client.timer is not None:
            client.timer.cancel()
            client.timer = None
        for channel in [c for c in client.channels if not self._allowed(client, c)]:
            self.hub.unsubscribe(client, channel)
            client.channels.discard(channel)
            self._write(client, protocol.error_frame(protocol.FORBIDDEN,
                                                     "the new token does not grant this channel",
                                                     channel))
        granted = sorted(grant.channels | self.anonymous)
        self._write(client, protocol.authenticated_frame(granted))

    def _allowed(self, client: Client, channel: str) -> bool:
        if channels.granted(self.anonymous, channel):
            return True
        return client.grant is not None and client.grant.covers(channel)

    async def _subscribe(self, client: Client, channel: str, since: str | None) -> None:
        await self.listener.connected_once.wait()
        if not self._allowed(client, channel) or not self.hub.exists(channel):
            # Refusals count as bad messages, so probing names costs a 4029, and the
            # set of refused names stays as small as the bad-message budget.
            if client.grant is None:  # not anonymous, and no token yet: same for any name
                self._bad_message(client, protocol.ProtocolError(
                    protocol.UNAUTHORIZED, "authenticate first: send an auth message"), channel)
                return
            if channel in client.refused:
                self._close(client, protocol.CLOSE_FORBIDDEN, "forbidden channel asked again")
                return
            client.refused.add(channel)
            self.metrics.auth_failures.labels(reason="forbidden").inc()
            self._bad_message(client, protocol.ProtocolError(
                protocol.FORBIDDEN, "channel not granted or does not exist"), channel)
            return
        if channel in client.channels:
            self.hub.unsubscribe(client, channel)
        elif len(client.channels) >= self.config.max_subscriptions:
            self._write(client, protocol.error_frame(
                protocol.TOO_MANY_SUBSCRIPTIONS,
                f"at most {self.config.max_subscriptions} subscriptions per connection", channel))
            return
        client.channels.add(channel)
        await self._attach(client, channel, since)

    async def _attach(self, client: Client, channel: str, since: str | None) -> None:
        """Send `subscribed`, replay what `since` missed, then go live, with no gap.

        The replay loop ends on a check of the hub's cursor, and going live
        follows it with no await in between, so no event can slip between the
        last replayed one and the first live one.
        """
        hub = self.hub
        db_id = hub.db_id
        pos = hub.cursor if since is None else log.parse_position(since, db_id)
        if pos is not None and pos > hub.cursor:
            pos = await self._wait_cursor(pos)
        if pos is None:
            self._write(client, protocol.subscribed_frame(channel, hub.position(hub.cursor)))
            self._resync(client, channel, "unknown position")
            hub.subscribe(client, channel)
            return
        self._write(client, protocol.subscribed_frame(channel, hub.position(pos)))
        replayed = 0
        while not client.closing:
            if hub.db_id != db_id:  # replaced while we awaited: pos means nothing now
                self._resync(client, channel, "database replaced")
                break
            if pos >= hub.cursor:
                break
            upto = hub.cursor
            frames: list[bytes] | None
            if hub.remembers(pos):
                frames = hub.replay(channel, pos)
            else:
                try:
                    frames = await self._replay_from_log(channel, pos, upto)
                except (psycopg.Error, OSError) as exc:
                    logger.warning("cannot replay from the log: %s", " ".join(str(exc).split()))
                    self._close(client, 1011, "the event log is unreachable: reconnect later")
                    return
                if frames is None:
                    self._resync(client, channel, "position expired")
                    break
            replayed += len(frames)
            if replayed > self.config.replay_limit:
                self._resync(client, channel, "too many events missed")
                break
            if not await self._send_replay(client, frames):
                return
            pos = upto
        if not client.closing and channel in client.channels:
            hub.subscribe(client, channel)

    async def _replay_from_log(self, channel: str, pos: log.Pos,
                               upto: log.Pos) -> list[bytes] | None:
        """Frames from the database for (pos, upto]; None when pos was pruned.

        The prune mark is read after the rows: a prune that committed before the
        read shows in it, one that committed after it deleted nothing we read.
        """
        async with self._replay_lock:
            for attempt in (1, 2):  # the kept connection may have died since its last use
                if self._replay_conn is None or self._replay_conn.closed:
                    self._replay_conn = await self.listener.connect()
                conn = self._replay_conn
                try:
                    events = await log.read_channel(conn, channel, pos, upto,
                                                    self.config.replay_limit + 1)
                    expired = log.expired(pos, await log.pruned_through(conn))
                    break
                except (psycopg.OperationalError, OSError):
                    self._replay_conn = None
                    await conn.close()
                    if attempt == 2:
                        raise
        if expired:
            return None
        return [f for e in events if (f := self.hub.frame_for(channel, e))]

    async def _send_replay(self, client: Client, frames: list[bytes]) -> bool:
        """Send with backpressure; a client that stalls is closed as too slow."""
        try:
            for frame in frames:
                await asyncio.wait_for(client.ws.send(frame, text=True), REPLAY_STALL)
        except asyncio.TimeoutError:
            self._too_slow(client)
            return False
        self.metrics.frames_sent.labels(endpoint=client.endpoint).inc(len(frames))
        return True

    def _resync(self, client: Client, channel: str, reason: str) -> None:
        self.metrics.resyncs.labels(reason=reason).inc()
        self._write(client, protocol.resync_frame(channel, self.hub.position(self.hub.cursor),
                                                  reason))

    async def _wait_cursor(self, pos: log.Pos) -> log.Pos | None:
        """Wait (briefly) for this daemon to read up to a position another daemon gave out."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cursor_waiters.append((pos, future))
        self.listener.wake()
        try:
            await asyncio.wait_for(future, CURSOR_WAIT)
        except asyncio.TimeoutError:
            return None
        finally:
            with contextlib.suppress(ValueError):
                self._cursor_waiters.remove((pos, future))
        return pos

    # -- fan-out ----------------------------------------------------------------

    def deliver(self, batch: Batch[Client]) -> None:
        """Write a published batch: each frame once per client, legacy through its throttle."""
        for delivery in batch.deliveries:
            self._fanout(delivery.frame, delivery.clients)
        if batch.truncate_resyncs:
            self.metrics.resyncs.labels(reason="truncate").inc(batch.truncate_resyncs)
        if batch.legacy:
            now = asyncio.get_running_loop().time()
            for client in batch.legacy:
                self._legacy_changed(client, now)
        for pos, future in self._cursor_waiters:
            if pos <= self.hub.cursor and not future.done():
                future.set_result(None)

    def _fanout(self, frame: bytes, clients: list[Client], endpoint: str = V1) -> None:
        """Write one event to many clients: its WebSocket frame is serialized once.

        An uncompressed server frame is the same bytes for every client (no
        mask), so plain connections get those bytes straight on their
        transport; profiling (bench/RESULTS.md) put websockets' per-send frame
        building at a sixth of the fan-out time, the rest being the send
        syscall. Compressed connections still go through broadcast(). The
        daemon never fragments a message, so no send can be in progress.
        """
        limit = self.config.max_client_buffer
        wire = Frame(Opcode.TEXT, frame).serialize(mask=False)  # a server never masks
        compressed = []
        sent = 0
        for client in clients:
            ws = client.ws
            transport = ws.transport
            if client.closing or transport is None or ws.protocol.state is not State.OPEN:
                continue
            if transport.get_write_buffer_size() > limit:
                self._too_slow(client)
            elif ws.protocol.extensions:
                compressed.append(ws)
            else:
                transport.write(wire)
                sent += 1
        if compressed:
            broadcast(compressed, frame, text=True)
        self.metrics.frames_sent.labels(endpoint=endpoint).inc(sent + len(compressed))

    def _legacy_changed(self, client: Client, now: float) -> None:
        assert client.throttle is not None
        delay = client.throttle.hit(now)
        if delay == 0.0:
            self._legacy_due(client)
        elif delay is not None:
            client.timer = asyncio.get_running_loop().call_later(delay, self._legacy_due, client)

    def _legacy_due(self, client: Client) -> None:
        """Send the `updated` a legacy client is owed; it is never closed as too slow.

        Its backlog is one bit: while earlier bytes still wait in its buffer,
        the owed `updated` waits for the next window instead of piling up (a
        client that never reads again is ended by the ping timeout).
        """
        assert client.throttle is not None
        client.timer = None
        loop = asyncio.get_running_loop()
        transport = client.ws.transport
        if transport is not None and transport.get_write_buffer_size() > 0:
            client.throttle.defer()
            client.timer = loop.call_later(client.throttle.window, self._legacy_due, client)
            return
        client.throttle.fired(loop.time())
        self._write(client, protocol.LEGACY_UPDATED)

    def _write(self, client: Client, frame: bytes) -> None:
        """Queue one frame for one client, in order, without waiting."""
        self._fanout(frame, [client], client.endpoint)

    def _too_slow(self, client: Client) -> None:
        self.metrics.slow_closes.inc()
        logger.info("closing a client that stopped reading (%s, %d subscriptions)",
                    client.address, len(client.channels))
        self._close(client, protocol.CLOSE_TOO_SLOW, "too slow: resume from your last position")

    def _close(self, client: Client, code: int, reason: str) -> None:
        """Close a client from synchronous code: stop sending to it at once, then close."""
        if client.closing:
            return
        self._drop_subscriptions(client)
        client.closing = asyncio.create_task(client.ws.close(code, reason[:120]))


def _forget_handshake(ws: ServerConnection) -> None:
    """Drop the handshake's headers and body: nothing reads them after process_request.

    websockets keeps both for the connection's whole life. They are most of
    an idle connection's memory that is not the socket itself (bench: 16.6 ->
    13.8 KiB a connection), and the request's Cookie header holds a token.
    """
    if ws.request is not None:
        ws.request.headers = Headers()
    if ws.response is not None:
        ws.response.headers = Headers()
        ws.response.body = b""


async def run(config: Config) -> None:
    """Run a daemon until SIGTERM or SIGINT, then drain (the `serve` subcommand)."""
    import signal

    daemon = Daemon(config)
    await daemon.start()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    waiter = asyncio.create_task(daemon.wait())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if waiter.done():
            waiter.result()
        logger.info("%s: stopped accepting, closing %d clients with 1001 (drain up to %gs)",
                    received[0] if received else "server closed", len(daemon.clients),
                    config.drain_seconds)
    finally:
        waiter.cancel()
        stopper.cancel()
        await daemon.stop()
    logger.info("stopped")


async def _no_websocket(ws: ServerConnection) -> None:  # pragma: no cover - never accepted
    """The --metrics-port server answers every request over HTTP; nothing reaches here."""
    await ws.close(1008, "not a WebSocket port")

