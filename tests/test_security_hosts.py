"""Hosts against a live daemon: DNS rebinding is refused on every path, real names pass.

A DNS-rebinding page at http://evil.example points evil.example at the
daemon's address. The browser then sends `Host: evil.example` and `Origin:
http://evil.example` together, which passes "the Origin's host equals Host";
only checking Host against the names the daemon serves under stops it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from bridge.server import Daemon
from tests.fix_bridge import raw_http, token
from tests.timing import scaled

pytestmark = pytest.mark.asyncio

StartDaemon = Callable[..., Awaitable[Daemon]]
UPGRADE = ("Upgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
REBINDING = "Host: evil.example:{port}\r\nOrigin: http://evil.example:{port}\r\n"



async def handshake(port: int, host: str, origin: str | None = None) -> int:
    """A real WebSocket handshake to 127.0.0.1 that names `host` (Host, and by default Origin)."""
    try:
        ws = await connect(f"ws://{host}:{port}/v1", host="127.0.0.1", port=port,
                           additional_headers=[("Origin", origin or f"http://{host}:{port}")],
                           open_timeout=scaled(10))
    except InvalidStatus as exc:
        return exc.response.status_code
    await ws.close()
    return 101


async def test_dns_rebinding_is_refused_on_every_path(start_daemon: StartDaemon) -> None:
    """Host and Origin both evil.example: 421 naming --allowed-hosts, handshakes and HTTP alike."""
    daemon = await start_daemon(allow_anonymous=("example_task",), metrics_port=0)
    cookie = f"Cookie: bridge_token={token(7, 'example_task')}\r\n"
    for port, path, extra in [(daemon.port, "/v1", UPGRADE), (daemon.port, "/", UPGRADE + cookie),
                              (daemon.port, "/healthz", ""), (daemon.port, "/readyz", ""),
                              (daemon.port, "/metrics", ""), (daemon.port, "/nowhere", ""),
                              (daemon.metrics_port, "/metrics", ""),
                              (daemon.metrics_port, "/healthz", "")]:
        assert port is not None
        request = f"GET {path} HTTP/1.1\r\n{REBINDING.format(port=port)}{extra}\r\n"
        response = await raw_http(port, request)
        assert response.startswith(b"HTTP/1.1 421 "), (port, path, response[:80])
        assert b"--allowed-hosts" in response and b"bridge_" not in response
    # The real thing, through a WebSocket client, on the endpoint the page would use.
    assert await handshake(daemon.port, "evil.example") == 421
    refused = daemon.metrics.registry.get_sample_value("bridge_auth_failures_total",
                                                       {"reason": "host"})
    assert refused == 9


@pytest.mark.parametrize("request_head", [
    "GET /healthz HTTP/1.1\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: \r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nHost: evil.example\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: evil.example\r\nHost: 127.0.0.1\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1 evil.example\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: localhost.evil.example\r\n\r\n",
    "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1.evil.example\r\n\r\n",
])
async def test_missing_repeated_or_lookalike_hosts_are_421(daemon: Daemon,
                                                           request_head: str) -> None:
    """No Host, an empty one, two of them, or a name that only starts like loopback: 421."""
    response = await raw_http(daemon.port, request_head)
    assert response.startswith(b"HTTP/1.1 421 "), response[:80]


async def test_loopback_names_always_pass(start_daemon: StartDaemon) -> None:
    """localhost, 127.0.0.1 and *.localhost pass, even with --allowed-hosts set to other names."""
    for daemon in (await start_daemon(), await start_daemon(allowed_hosts=("app.example",))):
        for host in ("localhost", "127.0.0.1", "bridge.localhost"):
            assert await handshake(daemon.port, host) == 101, host
        response = await raw_http(daemon.port, "GET /healthz HTTP/1.1\r\nHost: [::1]\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 200 "), response[:80]


async def test_allowed_hosts_and_their_default_from_allowed_origins(
    start_daemon: StartDaemon,
) -> None:
    """--allowed-hosts names pass (.name for subdomains); by default so do --allowed-origins'."""
    listed = await start_daemon(allowed_hosts=("app.example", ".example.org"))
    for host in ("app.example", "APP.example.", "example.org", "bridge.example.org"):
        assert await handshake(listed.port, host) == 101, host
    for host in ("evil.example", "app.example.evil", "badexample.org"):
        assert await handshake(listed.port, host) == 421, host
    by_origin = await start_daemon(allowed_origins=("http://app.example:8000",))
    assert await handshake(by_origin.port, "app.example", "http://app.example:8000") == 101
    status = await raw_http(by_origin.port, "GET /healthz HTTP/1.1\r\nHost: app.example\r\n\r\n")
    assert status.startswith(b"HTTP/1.1 200 "), status[:80]
    assert await handshake(by_origin.port, "evil.example") == 421
