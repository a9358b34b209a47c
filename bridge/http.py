"""The plain-HTTP side: routing by exact path, /healthz, /readyz, /metrics, handshake checks.

Every request reaches the daemon as HTTP first. Its Host must name the
daemon (--allowed-hosts, loopback names), on either port, or it gets a 421.
Then its path decides, exactly
(query string aside): /healthz, /readyz and /metrics get a plain answer on
either port (/metrics on the public port only without --metrics-port); /v1
and / may become WebSockets once the handshake checks pass (origin, the
per-address limit, and for / a token or an anonymous channel); anything
else is a 404. The checks themselves are the pure functions of auth.py; this
module adds the counting, the logging and the HTTP answers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import weakref
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from . import log
from .auth import (
    Grant,
    TokenError,
    Verifier,
    client_address,
    cookie_token,
    default_hosts,
    host_allowed,
    legacy_channels,
    origin_allowed,
)
from .config import Config
from .listener import Listener
from .metrics import CONTENT_TYPE_LATEST, LogStats, Metrics

logger = logging.getLogger(__name__)

LOG_STATS_EVERY = 5.0
LOG_STATS_TIMEOUT = 3.0
PLAIN_PATHS = ("/healthz", "/readyz", "/metrics")
WEBSOCKET_PATHS = ("/", "/v1")


def request_path(target: str) -> str:
    """The path of a request target, compared exactly: only the query string is cut.

    Not urlsplit(): it reads `//x/metrics` and `http://x/metrics` as a host
    and the path `/metrics`, so a proxy that denies `location = /metrics`
    would pass them on and the daemon would answer them as /metrics.
    """
    return target.partition("?")[0]


@dataclass
class Handshake:
    """What the checks learned about a connection before it was accepted."""

    address: str
    grant: Grant | None
    legacy_channels: tuple[str, ...] = ()


class HttpSide:
    """Answers plain requests and admits or refuses WebSocket handshakes."""

    def __init__(self, config: Config, metrics: Metrics, verifier: Verifier,
                 anonymous: frozenset[str], listener: Listener):
        self.config = config
        self.metrics = metrics
        self.verifier = verifier
        self.anonymous = anonymous
        self.listener = listener
        self.allowed_hosts = config.allowed_hosts or default_hosts(config.allowed_origins,
                                                                   config.host)
        self.draining = False
        self.per_address: Counter[str] = Counter()
        # Weak: a handshake that the checks accepted can still fail (a plain GET,
        # a bad Sec-WebSocket-Key) and never reach the handler; its entry must not stay.
        self.handshakes: weakref.WeakKeyDictionary[ServerConnection, Handshake] = (
            weakref.WeakKeyDictionary())
        self._log_stats_at = -math.inf
        self._log_stats_lock = asyncio.Lock()

    # -- routing ----------------------------------------------------------------

    async def route(self, connection: ServerConnection, request: Request) -> Response | None:
        """The public port: plain endpoints, or the checks of a WebSocket handshake."""
        if refused := self._refuse_host(connection, request):
            return refused
        path = request_path(request.path)
        if path in ("/healthz", "/readyz") or (path == "/metrics"
                                               and self.config.metrics_port is None):
            return await self._plain(connection, path)
        if path not in WEBSOCKET_PATHS:
            return connection.respond(404, "not found: use /v1 (JSON) or / (legacy)\n")
        return self._check_handshake(connection, request, path)

    async def route_metrics(self, connection: ServerConnection, request: Request) -> Response:
        """The --metrics-port server: /metrics, /healthz and /readyz, nothing else."""
        if refused := self._refuse_host(connection, request):
            return refused
        path = request_path(request.path)
        if path in PLAIN_PATHS:
            return await self._plain(connection, path)
        return connection.respond(404, "not found: this port serves /metrics, /healthz and"
                                  " /readyz\n")

    def _refuse_host(self, connection: ServerConnection, request: Request) -> Response | None:
        """421 for a request whose Host is not one of ours (DNS rebinding), on every path."""
        hosts = request.headers.get_all("Host")
        if len(hosts) == 1 and host_allowed(hosts[0], self.allowed_hosts):
            return None
        self.metrics.auth_failures.labels(reason="host").inc()
        logger.info("refused host %r from %s", ", ".join(hosts)[:200],
                    self._address(connection, request))
        return connection.respond(421, "host not allowed: list this host name in --allowed-hosts"
                                  " (BRIDGE_ALLOWED_HOSTS, or BRIDGE['ALLOWED_HOSTS'])\n")

    # -- handshakes -------------------------------------------------------------

    def _check_handshake(self, connection: ServerConnection, request: Request,
                         path: str) -> Response | None:
        """None admits the handshake (and records what it learned); a Response refuses it."""
        address = self._address(connection, request)
        origins = request.headers.get_all("Origin")
        hosts = request.headers.get_all("Host")
        if len(origins) > 1 or not origin_allowed(
            origins[0] if origins else None, hosts[0] if len(hosts) == 1 else None,
            self.config.allowed_origins,
        ):
            self.metrics.auth_failures.labels(reason="origin").inc()
            logger.info("refused origin %r from %s", ", ".join(origins)[:200], address)
            return connection.respond(403, "origin not allowed\n")
        limit = self.config.max_connections_per_ip
        if limit and self.per_address[address] >= limit:
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
            granted = self.anonymous | (grant.channels if grant else frozenset())
            handshake.legacy_channels = legacy_channels(granted, self.config.legacy_channels)
            if not handshake.legacy_channels:
                self.metrics.auth_failures.labels(reason="no_token").inc()
                return connection.respond(401, "a bridge_token cookie is required\n")
        self.handshakes[connection] = handshake
        return None

    def _address(self, connection: ServerConnection, request: Request) -> str:
        peer = connection.remote_address[0] if connection.remote_address else "?"
        forwarded = ",".join(request.headers.get_all("X-Forwarded-For"))
        return client_address(str(peer), forwarded, self.config.trusted_proxies)

    def opened(self, address: str) -> None:
        """A connection from `address` became a WebSocket: it counts against the limit."""
        self.per_address[address] += 1

    def closed(self, address: str) -> None:
        self.per_address[address] -= 1
        if self.per_address[address] <= 0:
            del self.per_address[address]

    # -- plain endpoints --------------------------------------------------------

    async def _plain(self, connection: ServerConnection, path: str) -> Response:
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
