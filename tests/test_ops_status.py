"""`python -m bridge status`: instances, the log, and each daemon's clients, channels and lag."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Awaitable, Callable

from bridge.server import Daemon
from tests.django_site import REPO, child_env, free_port
from tests.fix_bridge import WsClient, caught_up, execute, token, v1_url
from tests.timing import scaled

StartDaemon = Callable[..., Awaitable[Daemon]]


async def status(db_url: str, *urls: str) -> subprocess.CompletedProcess[str]:
    args = [arg for url in urls for arg in ("--metrics-url", url)]
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "bridge", "status", *args],
        env=child_env(DATABASE_URL=db_url), cwd=REPO, capture_output=True, text=True,
        timeout=scaled(60),
    )


async def test_status_shows_instances_log_and_daemon_numbers(
    start_daemon: StartDaemon, watched_db: str
) -> None:
    """Two daemons: both listed by application_name, log positions, clients, channels, lag."""
    first, second = await start_daemon(), await start_daemon(metrics_port=0)
    client = await WsClient.connect(v1_url(first))
    await client.auth(token(1, "example_task"))
    await client.subscribe("example_task:owner_id=5")
    execute(watched_db, "INSERT INTO example_task (title, owner_id) VALUES ('a', 5), ('b', 6)")
    await client.expect("event", channel="example_task:owner_id=5")
    await caught_up(first, watched_db)
    urls = (f"http://127.0.0.1:{first.port}/metrics",
            f"http://127.0.0.1:{second.metrics_port}/metrics")
    result = await status(watched_db, *urls)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert "instances (2):" in out, out
    for daemon in (first, second):
        assert daemon.listener.application_name in out
    db_id = first.hub.db_id
    positions = re.findall(rf"(?:oldest|newest) ({db_id}-\d+-\d+)", out)
    assert len(positions) == 2, out
    assert "watched tables (1):" in out and "public.example_task -> example_task" in out
    assert f"daemon {urls[0]} ({first.listener.application_name}" in out
    assert "clients 1 (legacy 0, v1 1); subscriptions 1 (example_task 1)" in out, out
    assert "clients 0 (legacy 0, v1 0); subscriptions 0 (none)" in out, out
    assert re.search(r"lag p50 <= [\d.]+ms, p99 <= [\d.]+ms", out), out
    assert "total: 1 clients, 1 subscriptions on 2 of 2 daemons" in out
    await client.close()


async def test_status_exits_1_when_a_daemon_is_unreachable(watched_db: str) -> None:
    """A --metrics-url that does not answer is reported and makes the exit status 1."""
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    result = await status(watched_db, dead)
    assert result.returncode == 1
    assert f"daemon {dead}: unreachable" in result.stdout
    assert "instances (0):" in result.stdout


async def test_status_without_schema_says_what_to_do(db_url: str) -> None:
    """On a database without the bridge schema, status exits 2 and says to install triggers."""
    result = await status(db_url)
    assert result.returncode == 2
    assert "run `python -m bridge install-triggers TABLE...`" in result.stderr
    assert "Traceback" not in result.stderr
