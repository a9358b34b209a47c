"""Origins and limits against a live daemon: each limit is a flag, with a default and a test."""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from bridge.config import Config
from bridge.server import Daemon
from tests.fix_bridge import SECRET, WsClient, execute, legacy_url, raw_http, token, v1_url
from tests.timing import scaled, wait_for

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")



async def _status(url: str, headers: list[tuple[str, str]]) -> int:
    """The HTTP status of a WebSocket handshake: 101 if it opened, else the refusal's."""
    try:
        ws = await connect(url, additional_headers=headers, open_timeout=scaled(10))
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


# -- origins ---------------------------------------------------------------------------------


async def test_default_origin_is_the_host_connected_to_any_port(daemon: Daemon) -> None:
    """A page from 127.0.0.1:8000 may open 127.0.0.1:<port>; another site gets 403."""
    url = v1_url(daemon)
    assert await _status(url, [("Origin", "http://127.0.0.1:8000")]) == 101
    assert await _status(url, [("Origin", "https://127.0.0.1")]) == 101
    assert await _status(url, []) == 101  # no Origin: not a browser, nothing to hijack
    for origin in ("https://evil.example", "http://127.0.0.1.evil.example",
                   "http://127.0.0.1@evil.example", "null"):
        assert await _status(url, [("Origin", origin)]) == 403, origin


async def test_cross_site_page_cannot_ride_the_cookie(daemon: Daemon) -> None:
    """A valid bridge_token cookie does not help a page on another site: 403 before any auth."""
    cookie = ("Cookie", "bridge_token=" + token(7, "example_task"))
    evil = ("Origin", "https://evil.example")
    assert await _status(legacy_url(daemon), [cookie, evil]) == 403
    assert await _status(v1_url(daemon), [cookie, evil]) == 403
    assert await _status(legacy_url(daemon), [cookie, ("Origin", "http://127.0.0.1:8000")]) == 101


async def test_allowed_origins_replaces_the_default(start_daemon: StartDaemon) -> None:
    """--allowed-origins https://app.example: that origin passes, even the same host does not."""
    daemon = await start_daemon(allowed_origins=("https://app.example",))
    url = v1_url(daemon)
    assert await _status(url, [("Origin", "https://app.example")]) == 101
    assert await _status(url, [("Origin", "http://127.0.0.1:8000")]) == 403
    assert await _status(url, [("Origin", "http://app.example")]) == 403
    assert await _status(url, []) == 101


@pytest.mark.parametrize(
    "headers",
    [
        "Origin: http://[bad\r\n",
        "Origin: http://127.0.0.1\r\nOrigin: http://127.0.0.1\r\n",
        "Origin: https://evil.example\r\nOrigin: http://127.0.0.1\r\n",
    ],
)
async def test_malformed_or_repeated_origin_is_403_not_500(
    daemon: Daemon, headers: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An Origin that does not parse, or two of them, is refused; the daemon logs no error."""
    caplog.set_level(logging.INFO)
    response = await raw_http(daemon.port, f"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                                            f"{UPGRADE}\r\n")
    assert response.startswith(b"HTTP/1.1 403 "), response[:60]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- frames, subscriptions, bad messages -----------------------------------------------------


async def test_frame_size_default_64kib_then_1009(daemon: Daemon) -> None:
    """Default --max-frame-size 64KiB: a frame just under it is read, one over it closes 1009."""
    client = await WsClient.connect(v1_url(daemon))
    await client.send_json({"type": "ping", "pad": "x" * 65000})
    await client.expect("pong")
    await client.send_json({"type": "ping", "pad": "x" * 65537})
    assert await client.closed_with() == 1009


async def test_frame_size_flag(start_daemon: StartDaemon) -> None:
    """--max-frame-size 1KiB: a 2 KB frame closes the connection with 1009."""
    daemon = await start_daemon(max_frame_size=1024)
    client = await WsClient.connect(v1_url(daemon))
    await client.send_json({"type": "ping", "pad": "x" * 900})
    await client.expect("pong")
    await client.send_json({"type": "ping", "pad": "x" * 2000})
    assert await client.closed_with() == 1009


async def test_subscriptions_per_connection(start_daemon: StartDaemon, watched_db: str) -> None:
    """--max-subscriptions 3: the fourth gets too_many_subscriptions, the others keep working."""
    daemon = await start_daemon(max_subscriptions=3)
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    for owner in (1, 2, 3):
        await client.subscribe(f"example_task:owner_id={owner}")
    await client.subscribe("example_task:owner_id=3")  # again: a resubscribe, not a fourth
    await client.send_json({"type": "subscribe", "channel": "example_task:owner_id=4"})
    await client.expect("error", code="too_many_subscriptions", channel="example_task:owner_id=4")
    await client.send_json({"type": "unsubscribe", "channel": "example_task:owner_id=1"})
    await client.subscribe("example_task:owner_id=4")
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('x', 4)")
    await client.expect("event", channel="example_task:owner_id=4")
    await client.close()


async def test_bad_messages_per_minute_then_4029(start_daemon: StartDaemon) -> None:
    """--max-bad-messages 3: three bad frames get errors, the fourth closes with 4029."""
    daemon = await start_daemon(max_bad_messages=3, allow_anonymous=("example_task",))
    client = await WsClient.connect(v1_url(daemon))
    for frame in ("nope", '{"type": "dance"}', '{"type": "subscribe", "channel": "A"}'):
        await client.ws.send(frame)
        await client.expect("error")
    await client.sync()  # good frames in between do not reset the count ...
    await client.ws.send(b"\x00binary")
    assert await client.closed_with() == 4029  # ... the fourth bad one within a minute closes


async def test_bad_message_default_allows_twenty(daemon: Daemon) -> None:
    """Default --max-bad-messages 20: twenty errors, then the twenty-first bad frame closes."""
    client = await WsClient.connect(v1_url(daemon))
    for _ in range(20):
        await client.ws.send("{")
        await client.expect("error", code="bad_message")
    await client.ws.send("{")
    assert await client.closed_with() == 4029


# -- handshake deadline and binding ----------------------------------------------------------


async def test_handshake_timeout_closes_silent_and_slow_handshakes(
    start_daemon: StartDaemon,
) -> None:
    """--handshake-timeout 0.3s: a socket that sends nothing, or half a request, is closed."""
    daemon = await start_daemon(handshake_timeout=0.3)
    silent = await asyncio.open_connection("127.0.0.1", daemon.port)
    slow = await asyncio.open_connection("127.0.0.1", daemon.port)
    slow[1].write(b"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and never the rest
    for reader, writer in (silent, slow):
        # Well before the 10 s default would fire, the daemon has hung up.
        assert await asyncio.wait_for(reader.read(), scaled(5)) == b""
        writer.close()


async def test_default_host_is_loopback(watched_db: str) -> None:
    """Without --host the daemon listens on 127.0.0.1 only: reaching further is explicit."""
    daemon = Daemon(Config(database_url=watched_db, port=0, secret_key=SECRET, ping_interval=0))
    await daemon.start()
    try:
        assert daemon._server is not None
        addresses = {sock.getsockname()[0] for sock in daemon._server.sockets}
        assert addresses == {"127.0.0.1"}
    finally:
        await daemon.stop()


async def test_failed_handshakes_leave_nothing_behind(daemon: Daemon) -> None:
    """Plain GETs and broken upgrades on /v1 leave no per-connection state in the daemon."""
    for request in ("GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
                    "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\r\n",
                    f"GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n{UPGRADE}"
                    "Sec-WebSocket-Version: 8\r\n\r\n"):
        for _ in range(20):
            response = await raw_http(daemon.port, request)
            assert response.startswith(b"HTTP/1.1 4"), response[:40]

    def forgotten() -> bool:
        gc.collect()
        return not daemon.http.handshakes and not daemon.clients

    await wait_for(forgotten, what="the daemon to drop every failed handshake")


# -- connections per client address ----------------------------------------------------------


async def _open(url: str, headers: list[tuple[str, str]] | None = None
                ) -> ClientConnection | int:
    try:
        return await connect(url, additional_headers=headers or [], open_timeout=scaled(10))
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_connections_per_address_are_unlimited_by_default(
    start_daemon: StartDaemon,
) -> None:
    """Off by default: behind nginx or on loopback every client shares one address."""
    daemon = await start_daemon(allow_anonymous=("example_task",))
    opened = await asyncio.gather(*(_open(v1_url(daemon)) for _ in range(30)))
    assert all(isinstance(ws, ClientConnection) for ws in opened)
    for ws in opened:
        assert isinstance(ws, ClientConnection)
        await ws.close()


async def test_connections_per_address_limit(start_daemon: StartDaemon) -> None:
    """--max-connections-per-ip 2: a burst of ten gets two in and 429s; a close frees a slot."""
    daemon = await start_daemon(max_connections_per_ip=2, allow_anonymous=("example_task",))
    results = await asyncio.gather(*(_open(v1_url(daemon)) for _ in range(10)))
    opened = [r for r in results if isinstance(r, ClientConnection)]
    assert len(opened) == 2 and sorted(r for r in results if isinstance(r, int)) == [429] * 8
    await opened[0].close()
    await wait_for(lambda: len(daemon.clients) == 1, what="the daemon to see the close")
    again = await _open(v1_url(daemon))
    assert isinstance(again, ClientConnection)
    for ws in (again, opened[1]):
        await ws.close()


async def test_x_forwarded_for_counts_only_behind_a_trusted_proxy(
    start_daemon: StartDaemon,
) -> None:
    """With --trusted-proxies the limit applies per X-Forwarded-For client; without, per peer."""
    trusting = await start_daemon(max_connections_per_ip=1,
                                  trusted_proxies=(ipaddress.ip_network("127.0.0.0/8"),),
                                  allow_anonymous=("example_task",))
    url = v1_url(trusting)
    # nginx appends the real address: the rightmost untrusted hop is the client.
    a = await _open(url, [("X-Forwarded-For", "203.0.113.9")])
    b = await _open(url, [("X-Forwarded-For", "10.9.9.9, 198.51.100.7")])
    assert isinstance(a, ClientConnection) and isinstance(b, ClientConnection)
    assert await _open(url, [("X-Forwarded-For", "spoofed, 203.0.113.9")]) == 429
    assert await _open(url, [("X-Forwarded-For", "203.0.113.9, 127.0.0.1")]) == 429
    naive = await start_daemon(max_connections_per_ip=1, allow_anonymous=("example_task",))
    first = await _open(v1_url(naive), [("X-Forwarded-For", "203.0.113.1")])
    assert isinstance(first, ClientConnection)
    # Not a trusted proxy: a made-up X-Forwarded-For does not buy another slot.
    assert await _open(v1_url(naive), [("X-Forwarded-For", "203.0.113.2")]) == 429
    for ws in (a, b, first):
        await ws.close()


async def test_oversized_header_is_refused(daemon: Daemon) -> None:
    """A handshake with an 8 KB+ header line is refused by the HTTP parser, nothing else."""
    response = await raw_http(daemon.port, "GET /v1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                            f"Cookie: bridge_token={'x' * 20000}\r\n{UPGRADE}\r\n")
    assert not response.startswith(b"HTTP/1.1 101"), response[:60]
    assert not daemon.clients


@pytest.mark.parametrize(
    ("target", "status"),
    [("/metrics", 200), ("/metrics?x=1", 200), ("/healthz?probe", 200), ("//x/metrics", 404),
     ("http://x/metrics", 404), ("//x/healthz", 404), ("/metrics/", 404), ("/x/../metrics", 404),
     ("//x/v1", 404)],
)
async def test_paths_are_matched_exactly(daemon: Daemon, target: str, status: int) -> None:
    """/metrics, /healthz, /readyz and the WebSocket paths answer to exactly that path."""
    response = await raw_http(daemon.port, f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert response.startswith(f"HTTP/1.1 {status} ".encode()), response[:60]
    assert (b"bridge_frames_sent" in response) is (status == 200 and "metrics" in target)


async def test_daemon_is_an_async_context_manager(watched_db: str) -> None:
    """`async with Daemon(config)` starts it (bound, answering) and stops it on the way out."""
    async with Daemon(Config(database_url=watched_db, port=0, secret_key=SECRET,
                             ping_interval=0)) as daemon:
        await wait_for(daemon.listener.ready.wait(), what="the listener to be ready")
        response = await raw_http(daemon.port, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200 ")
        port = daemon.port
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", port)
