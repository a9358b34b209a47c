"""Helpers for the operations tests: daemons as child processes, nginx, a reconnecting client.

Plain classes (no fixtures), used by tests/test_ops_*.py. Everything is real:
`python -m bridge serve` processes that get real signals, Debian's nginx on a
loopback port, PostgreSQL writers on their own connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from tests.django_site import REPO, child_env, free_port
from tests.fix_bridge import SECRET, token
from tests.timing import scaled, wait_for

NGINX = "/usr/sbin/nginx"
DEPLOY = REPO / "deploy"


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """Status and body of a GET (any status, no exception for 4xx/5xx)."""
    try:
        with urllib.request.urlopen(url, timeout=scaled(timeout)) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def http_status(url: str) -> int | None:
    """The status of a GET, or None when nothing answers."""
    try:
        return http_get(url, timeout=2)[0]
    except (urllib.error.URLError, OSError):
        return None


class BridgeProcess:
    """`python -m bridge serve` as a child process, with its log in a file."""

    def __init__(self, database_url: str, *args: str, port: int | None = None,
                 metrics_port: int | None = None, env: dict[str, str] | None = None):
        self.port = port or free_port()
        self.metrics_port = metrics_port
        self.args = args
        self.env = child_env(DATABASE_URL=database_url, BRIDGE_SECRET_KEY=SECRET, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None
        fd, name = tempfile.mkstemp(prefix="bridge-", suffix=".log")
        os.close(fd)
        self.log_path = Path(name)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        port = self.metrics_port or self.port
        return f"http://127.0.0.1:{port}/metrics"

    def start(self) -> BridgeProcess:
        extra = ("--metrics-port", str(self.metrics_port)) if self.metrics_port else ()
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1",
                 "--port", str(self.port), "--ping-interval", "0", *extra, *self.args],
                env=self.env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        return self

    async def ready(self) -> None:
        """Wait until /readyz answers 200, failing early if the process died."""
        async def check() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited with {self.proc.returncode}:\n"
                                     f"{self.logs()}")
            return await asyncio.to_thread(http_status, self.http + "/readyz") == 200

        await wait_for(check, 60, what=f"daemon on port {self.port} to be ready")

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def exited(self, timeout: float = 30) -> int:
        """Wait for the process to exit; its return code."""
        assert self.proc is not None
        proc = self.proc
        await wait_for(lambda: proc.poll() is not None, timeout, what="the daemon to exit")
        return int(proc.returncode)

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Kill whatever is left (test teardown) and remove the log."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log_path.unlink(missing_ok=True)


def run_serve(database_url: str, *args: str, timeout: float = 60) -> tuple[int, str]:
    """Run `python -m bridge serve` until it exits by itself; (return code, output)."""
    env = child_env(DATABASE_URL=database_url, BRIDGE_SECRET_KEY=SECRET)
    result = subprocess.run(
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        env=env, cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=scaled(timeout),
    )
    return result.returncode, result.stdout + result.stderr


@dataclass
class Follower:
    """A client that follows a channel across reconnects, resuming from its last position.

    What a well-behaved browser (bridge.js) does: on any close it reconnects
    (to the next URL, or the same load-balanced one), authenticates, and
    subscribes with `since` = the last position it saw.
    """

    urls: Sequence[str]
    channel: str = "example_task"
    position: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    resyncs: list[dict[str, Any]] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)
    connections: int = 0
    connected: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None

    def start(self) -> Follower:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def pks(self) -> list[int]:
        return [int(pk) for e in self.events for pk in (e["pks"] or [])]

    async def received(self, ids: list[int], timeout: float = 30) -> list[int]:
        """Wait until as many rows as `ids` arrived (or the deadline); the rows received.

        A timeout is not raised here: the caller compares the lists, and pytest
        then shows which rows are missing.
        """
        with contextlib.suppress(TimeoutError):
            await wait_for(lambda: len(self.pks()) >= len(ids), timeout,
                           what="every committed row")
        return self.pks()

    async def _run(self) -> None:
        attempt = 0
        while True:
            url = self.urls[attempt % len(self.urls)]
            attempt += 1
            try:
                async with connect(url, open_timeout=scaled(5), close_timeout=1) as ws:
                    await self._follow(ws)
            except (OSError, InvalidHandshake, asyncio.TimeoutError):
                # Refused or half-open while a daemon restarts: the next URL, after a
                # short pause so a dead balancer does not spin (a client's backoff).
                await asyncio.sleep(0.05)

    async def _follow(self, ws: Any) -> None:
        await ws.send(json.dumps({"type": "auth", "token": token(1, self.channel)}))
        subscribe: dict[str, Any] = {"type": "subscribe", "channel": self.channel}
        if self.position is not None:
            subscribe["since"] = self.position
        await ws.send(json.dumps(subscribe))
        try:
            async for data in ws:
                frame = json.loads(data)
                if frame["type"] == "subscribed":
                    self.connections += 1
                    self.position = self.position or frame["position"]
                    self.connected.set()
                elif frame["type"] == "event":
                    self.events.append(frame)
                    self.position = frame["position"]
                elif frame["type"] == "resync":
                    self.resyncs.append(frame)
                    self.position = frame["position"]
        except ConnectionClosed:
            pass
        self.connected.clear()
        self.close_codes.append(ws.close_code)


class Writer:
    """Inserts one row per transaction until stopped, remembering every committed id.

    The short pause between inserts only paces the load (a few hundred rows a
    second at most), so a restart happens in the middle of a stream of
    commits; nothing waits on it.
    """

    def __init__(self, url: str, limit: int = 3000):
        self.url, self.limit = url, limit
        self.ids: list[int] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> Writer:
        self._task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> list[int]:
        self._stop.set()
        if self._task is not None:
            await self._task
        return self.ids

    async def _run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.url, autocommit=True) as conn:
            while not self._stop.is_set() and len(self.ids) < self.limit:
                cur = await conn.execute(
                    "INSERT INTO example_task (title, owner_id) VALUES ('w', 1) RETURNING id")
                row = await cur.fetchone()
                assert row is not None
                self.ids.append(int(row[0]))
                await asyncio.sleep(0.003)


async def count_v1_clients(daemon: BridgeProcess) -> int:
    """Open /v1 connections of a daemon, read from its /metrics."""
    _, text = await asyncio.to_thread(http_get, daemon.metrics_url)
    match = re.search(r'^bridge_connections\{endpoint="v1"\} (\S+)$', text, re.M)
    return int(float(match.group(1))) if match else 0


class Nginx:
    """Debian's nginx, as root in the foreground, with deploy/nginx's site on a loopback port."""

    def __init__(self, upstreams: Sequence[int], port: int | None = None,
                 site: str | None = None):
        """`site` replaces deploy/nginx's (then `port` is where it proxies the daemon)."""
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pgnb-nginx-"))
        if site is None:
            site = render_nginx_site((DEPLOY / "nginx" / "pg-notify-bridge.conf").read_text(),
                                     self.port, upstreams)
        (self.dir / "site.conf").write_text(site)
        (self.dir / "nginx.conf").write_text(
            f"pid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/error.log info;\n"
            "worker_processes 1;\n"
            "events { worker_connections 256; }\n"
            "http {\n"
            f"    access_log {self.dir}/access.log;\n"
            f"    client_body_temp_path {self.dir}/body;\n"
            f"    proxy_temp_path {self.dir}/proxy;\n"
            f"    fastcgi_temp_path {self.dir}/fastcgi;\n"
            f"    uwsgi_temp_path {self.dir}/uwsgi;\n"
            f"    scgi_temp_path {self.dir}/scgi;\n"
            f"    include {self.dir}/site.conf;\n"
            "}\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1"

    def check(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([NGINX, "-t", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
                               "-g", "daemon off; user root;"], capture_output=True, text=True)

    async def start(self) -> Nginx:
        self.proc = subprocess.Popen(
            [NGINX, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"),
             "-g", "daemon off; user root;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        proc = self.proc

        async def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"nginx exited: {self.error_log()}")
            return await asyncio.to_thread(http_status,
                                           f"http://127.0.0.1:{self.port}/healthz") is not None

        await wait_for(up, 30, what="nginx to answer")
        return self

    def error_log(self) -> str:
        with contextlib.suppress(OSError):
            return (self.dir / "error.log").read_text(errors="replace")
        return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(scaled(10))
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)


SITE_NAME = "app.example.org"  # deploy/nginx's server_name, and BRIDGE_ALLOWED_HOSTS in deploy/


def render_nginx_site(text: str, port: int, upstreams: Sequence[int]) -> str:
    """deploy/nginx's site with its listen port and upstream servers replaced (and checked)."""
    servers = list(re.finditer(r"^(?P<indent>[ \t]*)server 127\.0\.0\.1:\d+(?P<opts>[^;]*);\n",
                               text, re.M))
    assert len(servers) >= 2, "deploy/nginx: expected two or more upstream server lines"
    first = servers[0]
    block = "".join(f"{first['indent']}server 127.0.0.1:{p}{first['opts']};\n" for p in upstreams)
    text = text[:first.start()] + block + text[servers[-1].end():]
    listens = list(re.finditer(r"^(?P<indent>[ \t]*)listen (?P<addr>[^\s;]+)(?P<opts>[^;\n]*);\n",
                               text, re.M))
    assert listens, "deploy/nginx: expected a listen line"
    for match in reversed(listens):  # each IPv4 listen on our loopback port, IPv6 ones dropped
        own = ("" if match["addr"].startswith("[") else
               f"{match['indent']}listen 127.0.0.1:{port}{match['opts']};\n")
        text = text[:match.start()] + own + text[match.end():]
    # The site's name stays; 127.0.0.1 joins it, since tests connect by address.
    names = re.findall(r"^[ \t]*server_name (?!_;)([^;]+);", text, re.M)
    assert names == [SITE_NAME], f"deploy/nginx: expected server_name {SITE_NAME}, got {names}"
    return text.replace(f"server_name {SITE_NAME};", f"server_name {SITE_NAME} 127.0.0.1;")
