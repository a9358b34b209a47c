"""deploy/nginx in front of two real daemons: WebSocket upgrade, failover with no gap."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.django_site import free_port
from tests.fix_bridge import raw_http
from tests.ops_support import (
    NGINX,
    SITE_NAME,
    BridgeProcess,
    Follower,
    Nginx,
    Writer,
    count_v1_clients,
)
from tests.ops_support import http_get as get
from tests.timing import wait_for

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(),
                                reason="needs Debian's nginx (apt-get install nginx-light)")


@pytest.fixture
async def two_daemons(watched_db: str) -> AsyncIterator[list[BridgeProcess]]:
    daemons = [BridgeProcess(watched_db, "--trusted-proxies", "127.0.0.1/32",
                             "--allowed-hosts", SITE_NAME,  # as deploy/'s env file sets it
                             metrics_port=free_port()).start() for _ in range(2)]
    try:
        await asyncio.gather(*(d.ready() for d in daemons))
        yield daemons
    finally:
        for daemon in daemons:
            daemon.stop()


@pytest.fixture
async def nginx(two_daemons: list[BridgeProcess]) -> AsyncIterator[Nginx]:
    proxy = Nginx([d.port for d in two_daemons])
    checked = proxy.check()
    assert checked.returncode == 0, checked.stderr
    try:
        yield await proxy.start()
    finally:
        proxy.stop()


async def test_client_survives_the_loss_of_a_daemon_behind_nginx(
    nginx: Nginx, two_daemons: list[BridgeProcess], watched_db: str
) -> None:
    """A client through nginx whose daemon is killed resumes on the other one with no gap."""
    follower = Follower([nginx.url]).start()
    writer = Writer(watched_db)
    try:
        await wait_for(follower.connected.wait(), 30, what="the follower to subscribe")
        counts = await asyncio.gather(*(count_v1_clients(d) for d in two_daemons))
        assert sorted(counts) == [0, 1], counts
        doomed, survivor = (two_daemons if counts[0] else two_daemons[::-1])
        writer.start()
        await wait_for(lambda: len(follower.events) >= 20, 30, what="events before the kill")
        doomed.signal(signal.SIGKILL)
        await doomed.exited()
        written_while_down = len(writer.ids)
        await wait_for(lambda: follower.connections >= 2, 30, what="the follower to reconnect")
        assert await count_v1_clients(survivor) == 1
        await wait_for(lambda: len(writer.ids) >= written_while_down + 20, 30,
                       what="writes after the reconnect")
        ids = await writer.stop()
        received = await follower.received(ids)
    finally:
        await writer.stop()
        await follower.stop()
    assert received == ids, "every row exactly once, in commit order"
    assert follower.resyncs == []
    assert len(follower.close_codes) == 1


async def test_nginx_proxies_health_and_hides_metrics(nginx: Nginx) -> None:
    """Through nginx /healthz and /readyz answer and /metrics does not leak."""
    base = f"http://127.0.0.1:{nginx.port}"
    assert (await asyncio.to_thread(get, base + "/healthz"))[0] == 200
    assert (await asyncio.to_thread(get, base + "/readyz"))[0] == 200
    status, body = await asyncio.to_thread(get, base + "/metrics")
    assert status == 404 and "bridge_" not in body


async def test_nginx_never_serves_metrics_under_another_spelling(watched_db: str) -> None:
    """Behind deploy/nginx, a daemon that serves /metrics on its port leaks it under no spelling."""
    daemon = BridgeProcess(watched_db).start()  # no --metrics-port: /metrics on its own port
    proxy = Nginx([daemon.port])
    try:
        await daemon.ready()
        assert proxy.check().returncode == 0
        await proxy.start()
        assert (await asyncio.to_thread(get, daemon.http + "/metrics"))[0] == 200
        for target in ("/metrics", "//x/metrics", "http://x/metrics", "/metrics?a=b",
                       "/./metrics", "/%6detrics", "//metrics", "/v1/../metrics"):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
            writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         "Connection: close\r\n\r\n".encode())
            response = await asyncio.wait_for(reader.read(), 30)
            writer.close()
            assert response.startswith(b"HTTP/1.1 "), (target, response[:60])
            assert b"bridge_" not in response, (target, response[:200])
    finally:
        proxy.stop()
        daemon.stop()



async def test_nginx_answers_only_the_sites_name(
    nginx: Nginx, two_daemons: list[BridgeProcess]
) -> None:
    """A DNS-rebinding Host gets nginx's 421 and never reaches a daemon; the site's name does."""
    upgrade = ("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n")
    for path, extra in (("/healthz", ""), ("/v1", upgrade), ("/", upgrade)):
        response = await raw_http(nginx.port, f"GET {path} HTTP/1.1\r\nHost: evil.example\r\n"
                                               f"Origin: http://evil.example\r\n{extra}"
                                               "Connection: close\r\n\r\n")
        assert response.startswith(b"HTTP/1.1 421 "), (path, response[:80])
        # nginx's own error page, not the daemon's 421 (which names --allowed-hosts).
        assert b"<center>nginx" in response and b"--allowed-hosts" not in response
    response = await raw_http(nginx.port, f"GET /healthz HTTP/1.1\r\nHost: {SITE_NAME}\r\n"
                                           "Connection: close\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 200 ") and response.endswith(b"ok\n"), response
    for daemon in two_daemons:
        _, metrics = await asyncio.to_thread(get, daemon.metrics_url)
        assert 'reason="host"' not in metrics
