"""/metrics, /healthz and /readyz of a real daemon, on its public port and on --metrics-port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import psycopg
import pytest
from websockets.exceptions import InvalidStatus

from bridge.metrics import scrape, summarize
from bridge.server import Daemon
from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url
from tests.ops_support import http_get
from tests.timing import wait_for

StartDaemon = Callable[..., Awaitable[Daemon]]

EXPECTED = (
    "bridge_info", "bridge_connections", "bridge_subscriptions", "bridge_events_read_total",
    "bridge_frames_sent_total", "bridge_delivery_lag_seconds_bucket", "bridge_resyncs_total",
    "bridge_slow_consumer_closes_total", "bridge_auth_failures_total",
    "bridge_listener_reconnects_total", "bridge_listener_up", "bridge_log_bytes",
    "bridge_log_oldest_tick", "bridge_log_oldest_age_seconds",
)


def sample(daemon: Daemon, name: str) -> float:
    """One unlabelled sample from the daemon's registry (0 before it is first set)."""
    return daemon.metrics.registry.get_sample_value(name) or 0.0


async def get(url: str) -> tuple[int, str]:
    return await asyncio.to_thread(http_get, url)


async def test_metrics_port_serves_metrics_and_the_public_port_does_not(
    start_daemon: StartDaemon,
) -> None:
    """With --metrics-port, /metrics is on loopback there and 404 on the public port."""
    daemon = await start_daemon(metrics_port=0)
    assert daemon.metrics_port and daemon.metrics_port != daemon.port
    public, private = f"http://127.0.0.1:{daemon.port}", f"http://127.0.0.1:{daemon.metrics_port}"
    status, body = await get(private + "/metrics")
    assert status == 200 and "bridge_listener_up 1.0" in body
    assert (await get(public + "/metrics"))[0] == 404
    for base in (public, private):
        assert (await get(base + "/healthz"))[0] == 200
        assert (await get(base + "/readyz"))[0] == 200
    assert (await get(private + "/v1"))[0] == 404
    with pytest.raises(InvalidStatus):  # no WebSocket on the metrics port
        await WsClient.connect(f"ws://127.0.0.1:{daemon.metrics_port}/v1")
    bound = {s.getsockname()[0] for s in daemon._metrics_server.sockets
             if s.family == socket.AF_INET}
    assert bound == {"127.0.0.1"}


async def test_metrics_count_what_happens(start_daemon: StartDaemon, watched_db: str) -> None:
    """Connections, folded subscriptions, events, frames, lag, resyncs, auth failures, log."""
    daemon = await start_daemon()
    url = f"http://127.0.0.1:{daemon.port}/metrics"
    client = await WsClient.connect(v1_url(daemon))
    await client.auth(token(1, "example_task"))
    for channel in ("example_task", "example_task:owner_id=7", "example_task:owner_id=8"):
        await client.subscribe(channel)
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('a', 7)")
    got = {(await client.expect("event"))["channel"] for _ in range(2)}
    assert got == {"example_task", "example_task:owner_id=7"}
    await client.subscribe("example_task", since="not-a-position")
    await client.expect("resync", reason="unknown position")
    bad = await WsClient.connect(v1_url(daemon))
    await bad.send_json({"type": "auth", "token": token(1, "example_task", key="x" * 50)})
    assert await bad.closed_with() == 4001
    with pytest.raises(InvalidStatus):
        await WsClient.connect(v1_url(daemon), additional_headers={"Origin": "http://evil.test"})
    await caught_up(daemon, watched_db)

    status, text = await get(url)
    assert status == 200
    for name in EXPECTED:
        assert f"\n{name}" in text, name
    assert "owner_id" not in text, "row channels must not become labels"
    s = summarize(text)
    assert s.clients["v1"] == 1
    assert s.channels == {"example_task": 3}
    assert s.events_read >= 1 and s.frames_sent >= 4
    assert s.lag_count >= 1 and s.lag_quantile(0.5) is not None
    assert s.resyncs == 1
    assert s.auth_failures["token"] == 1 and s.auth_failures["origin"] == 1
    assert s.listener_up
    assert s.log_bytes > 0 and s.log_oldest_tick >= 1
    assert s.instance.startswith("pg_notify_bridge ")
    await client.close()


async def test_listener_reconnect_is_counted_and_readyz_follows(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """Killing the daemon's database sessions makes /readyz false until it is back, counted."""
    daemon = await start_daemon()
    base = f"http://127.0.0.1:{daemon.port}"
    with psycopg.connect(watched_db, autocommit=True) as conn:
        conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                     " WHERE datname = current_database() AND application_name LIKE"
                     " 'pg_notify_bridge %%' AND pid <> pg_backend_pid()")
    await wait_for(lambda: sample(daemon, "bridge_listener_reconnects_total") >= 1, 30,
                   what="the listener to reconnect")
    await wait_for(daemon.listener.ready.wait(), 30)
    assert (await get(base + "/readyz"))[0] == 200
    assert summarize((await get(base + "/metrics"))[1]).listener_reconnects >= 1


async def test_slow_consumer_close_is_counted(start_daemon: StartDaemon, watched_db: str) -> None:
    """A client that stops reading is closed with 4008 and counted."""
    daemon = await start_daemon(max_client_buffer=1024)
    stuck = await WsClient.connect(v1_url(daemon), max_queue=1)
    await stuck.auth(token(1, "example_task"))
    await stuck.subscribe("example_task")
    # Never read again: the kernel buffers fill, then the daemon's, then it gives up.
    with psycopg.connect(watched_db, autocommit=True) as conn:
        for _ in range(20):
            if sample(daemon, "bridge_slow_consumer_closes_total"):
                break
            conn.execute("DO $$ BEGIN FOR i IN 1..2000 LOOP"
                         " INSERT INTO example_task (title) VALUES (repeat('x', 10));"
                         " END LOOP; END $$")
            await caught_up(daemon, watched_db)
    assert sample(daemon, "bridge_slow_consumer_closes_total") == 1
    text = (await get(f"http://127.0.0.1:{daemon.port}/metrics"))[1]
    assert "bridge_slow_consumer_closes_total 1.0" in text
    assert await stuck.closed_with(timeout=30) in (4008, 1006)


def test_scrape_of_a_dead_daemon_raises() -> None:
    """scrape() of an unreachable URL raises OSError (status reports it, exit 1)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OSError):
        scrape(f"http://127.0.0.1:{port}/metrics", timeout=2)
