"""The daemon's wiring: build the parts, start them, wait, and stop them in order.

Data flows through the parts in this order: listener.py wakes the reader on
NOTIFY; reader.py stamps committed rows and publishes them to hub.py;
fanout.py writes the hub's frames to the clients' sockets. On the client
side, http.py routes each request by exact path and checks handshakes,
session.py holds each connection's state and rules, and replay.py brings a
new subscription from `since` to live. This module only connects them to
websockets' server and to each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from types import TracebackType

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from . import __version__, protocol
from .auth import Verifier
from .config import Config, require
from .fanout import (
    CLOSE_TIMEOUT,
    BoundedConnection,
    Client,
    Fanout,
    Link,
    bounded_connection,
    forget_handshake,
)
from .http import HttpSide, request_path
from .hub import Batch, Hub
from .listener import APPLICATION_NAME, Listener
from .metrics import Metrics, subscription_counts
from .positions import Positions
from .reader import Reader
from .replay import Replay
from .session import LEGACY, V1, Limits, Rules, Session

logger = logging.getLogger("bridge.server")


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
    """The bridge daemon: database listener, hub, and WebSocket server.

    Use ``async with Daemon(config) as daemon:`` (or start() and stop()).
    """

    def __init__(self, config: Config):
        require(config, "database_url")
        self.config = config
        self.metrics = Metrics()
        verifier = Verifier(config.secret_key, config.secret_key_fallbacks,
                            config.token_max_age)
        anonymous = frozenset(config.allow_anonymous)
        self.hub: Hub[Client] = Hub("", config.memory_events, Positions.from_config(
            config.secret_key, config.secret_key_fallbacks))
        self.reader = Reader(self.hub, self._deliver, self.metrics, retention=config.retention,
                             replay_limit=config.replay_limit,
                             memory_events=config.memory_events)
        self.listener = Listener(str(config.database_url), self.reader, self.metrics,
                                 instance=f"{socket.gethostname()}:{config.port}")
        self.metrics.watch_subscriptions(lambda: subscription_counts(self.hub))
        self.http = HttpSide(config, self.metrics, verifier, anonymous, self.listener)
        self.fanout = Fanout(self.metrics, config.max_client_buffer)
        self.replay: Replay[Link] = Replay(self.hub, self.listener, self.metrics,
                                           config.replay_limit)
        self.rules: Rules[Link] = Rules(
            hub=self.hub, verifier=verifier, metrics=self.metrics, anonymous=anonymous,
            limits=Limits(config.auth_timeout, config.max_subscriptions,
                          config.max_bad_messages, config.legacy_window, config.legacy_burst),
            write=self.fanout.write_one, attach=self.replay.attach,
            connected=self.listener.connected_once)
        self.clients: set[Client] = set()
        self._server: Server | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._metrics_server: Server | None = None

    async def __aenter__(self) -> Daemon:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start listening to the database and serving clients (returns once bound)."""
        cfg = self.config
        self._server = await serve(
            self._handler,
            cfg.host,
            cfg.port,
            process_request=self.http.route,
            create_connection=bounded_connection(cfg.max_client_buffer),
            max_size=cfg.max_frame_size,
            max_queue=16,
            compression="deflate" if cfg.compression else None,
            ping_interval=cfg.ping_interval or None,
            ping_timeout=cfg.ping_interval or None,
            open_timeout=cfg.handshake_timeout,
            close_timeout=CLOSE_TIMEOUT,
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
                process_request=self.http.route_metrics, server_header="pg-notify-bridge",
            )

    async def announce_when_ready(self) -> None:
        """Log "serving ..." once the listener is caught up (/readyz 200), not at bind:
        a port that answers 503 while the database is unreachable is not serving."""
        await self.listener.ready.wait()
        if self._metrics_server is not None:
            logger.info("serving /metrics on http://127.0.0.1:%d/metrics", self.metrics_port)
        logger.info("serving ws%s://%s:%d/v1 and legacy /", "s" if self.config.tls_cert else "",
                    self.config.host, self.port)

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
        self.http.draining = True
        if self._server is not None:
            # Stop accepting (an opening handshake now gets 503), then close each
            # client with 1001 within CLOSE_TIMEOUT, however full its buffer.
            self._server.close(close_connections=False)
            for client in list(self.clients):
                client.peer.close(protocol.CLOSE_GOING_AWAY, "")
            try:
                await asyncio.wait_for(self._server.wait_closed(), self.config.drain_seconds)
            except asyncio.TimeoutError:
                logger.warning("%d clients did not close within --drain-seconds %g: cutting them",
                               len(self.clients), self.config.drain_seconds)
                for client in list(self.clients):
                    if client.peer.ws.transport is not None:
                        client.peer.ws.transport.abort()
        if self._listener_task is not None:
            self._listener_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener_task
        await self.replay.close()
        if self._metrics_server is not None:
            self._metrics_server.close()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._metrics_server.wait_closed(), 2)

    def _ssl_context(self) -> ssl.SSLContext | None:
        if not self.config.tls_cert:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    def _deliver(self, batch: Batch[Client]) -> None:
        """The reader published a batch: write it, then wake resumes waiting for the cursor."""
        self.fanout.deliver(batch)
        self.replay.cursor_moved()

    async def _handler(self, ws: ServerConnection) -> None:
        """One WebSocket connection, from its accepted handshake to its end."""
        handshake = self.http.handshakes.pop(ws, None)
        if handshake is None:  # pragma: no cover - the checks always record one
            await ws.close(1011, "internal error")
            return
        path = request_path(ws.request.path) if ws.request is not None else "/v1"
        forget_handshake(ws)
        link = Link(ws)
        client: Client = Session(link, LEGACY if path == "/" else V1, handshake.address,
                                 handshake.grant, self.rules)
        if isinstance(ws, BoundedConnection):
            ws.on_overflow = client.too_slow
        self.clients.add(client)
        self.http.opened(client.address)
        self.metrics.connections.labels(endpoint=client.endpoint).inc()
        try:
            client.start(handshake.legacy_channels)
            async for data in ws:
                await client.receive(data)
                if link.closing is not None:
                    await link.closing
                    return
        except ConnectionClosed:
            pass
        finally:
            if isinstance(ws, BoundedConnection):
                ws.on_overflow = None
            self.clients.discard(client)
            self.http.closed(client.address)
            self.metrics.connections.labels(endpoint=client.endpoint).dec()
            client.forget()


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
        # Only the main thread may; under runbridge's autoreloader the daemon runs in
        # another thread and the reloader's own handlers end the process.
        with contextlib.suppress(ValueError, RuntimeError):
            loop.add_signal_handler(sig, on_signal, sig)
    waiter = asyncio.create_task(daemon.wait())
    stopper = asyncio.create_task(stop.wait())
    announce = asyncio.create_task(daemon.announce_when_ready())
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
        announce.cancel()
        await daemon.stop()
    logger.info("stopped")


async def _no_websocket(ws: ServerConnection) -> None:  # pragma: no cover - never accepted
    """The --metrics-port server answers every request over HTTP; nothing reaches here."""
    await ws.close(1008, "not a WebSocket port")

