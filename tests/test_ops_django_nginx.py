"""docs/django.md's production nginx snippet, run by real nginx: static files and the daemon."""

from __future__ import annotations

import asyncio
import http.server
import json
import re
import threading
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.django_site import REPO, free_port
from tests.fix_bridge import token
from tests.ops_support import NGINX, BridgeProcess, Nginx
from tests.ops_support import http_get as get
from tests.timing import scaled

pytestmark = pytest.mark.skipif(not Path(NGINX).exists(),
                                reason="needs Debian's nginx (apt-get install nginx-light)")
BRIDGE_JS = REPO / "django_hooks" / "static" / "django_hooks" / "bridge.js"


def docs_snippet() -> str:
    """The one ```nginx block of docs/django.md."""
    (block,) = re.findall(r"```nginx\n(.*?)```", (REPO / "docs" / "django.md").read_text(), re.S)
    return str(block)


def render(snippet: str, site: int, public: int, app: int, daemon: int, static: Path) -> str:
    """The snippet on loopback ports without TLS (no certificate here), paths made real."""
    replacements = {"listen 443 ssl;": f"listen 127.0.0.1:{site};",
                    "listen 8765 ssl;": f"listen 127.0.0.1:{public};",
                    "alias /srv/shop/static/;": f"alias {static}/;",
                    "proxy_pass http://127.0.0.1:8000;": f"proxy_pass http://127.0.0.1:{app};",
                    "proxy_pass http://127.0.0.1:8801;": f"proxy_pass http://127.0.0.1:{daemon};"}
    for old, new in replacements.items():
        assert snippet.count(old) == 1, f"docs/django.md's nginx snippet lost {old!r}"
        snippet = snippet.replace(old, new)
    return snippet


@pytest.fixture
def app_server(tmp_path: Path) -> Iterator[int]:
    """A stand-in for gunicorn: a plain HTTP server whose / says "the app"."""
    root = tmp_path / "app"
    root.mkdir()
    (root / "index.html").write_text("the app\n")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(http.server.SimpleHTTPRequestHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


@pytest.fixture
async def site(watched_db: str, app_server: int, tmp_path: Path) -> AsyncIterator[tuple[int, int]]:
    """nginx with the docs' snippet in front of a daemon and the app; (site, public) ports."""
    static = tmp_path / "static"
    (static / "django_hooks").mkdir(parents=True)
    (static / "django_hooks" / "bridge.js").write_bytes(BRIDGE_JS.read_bytes())
    daemon = BridgeProcess(watched_db, "--trusted-proxies", "127.0.0.1/32").start()
    site_port, public_port = free_port(), free_port()
    proxy = Nginx([], port=public_port, site=render(
        docs_snippet(), site_port, public_port, app_server, daemon.port, static))
    try:
        checked = proxy.check()
        assert checked.returncode == 0, checked.stderr
        await daemon.ready()
        await proxy.start()
        yield site_port, public_port
    finally:
        proxy.stop()
        daemon.stop()


async def test_docs_nginx_snippet_serves_static_app_and_daemon(site: tuple[int, int]) -> None:
    """Through the snippet: bridge.js from STATIC_ROOT, / from the app, a /v1 subscription."""
    site_port, public_port = site
    status, body = await asyncio.to_thread(
        get, f"http://127.0.0.1:{site_port}/static/django_hooks/bridge.js")
    assert status == 200 and "PgBridge" in body
    assert await asyncio.to_thread(get, f"http://127.0.0.1:{site_port}/") == (200, "the app\n")
    async with connect(f"ws://127.0.0.1:{public_port}/v1", open_timeout=scaled(10)) as ws:
        await ws.send(json.dumps({"type": "auth", "token": token(1, "example_task")}))
        await ws.send(json.dumps({"type": "subscribe", "channel": "example_task"}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), scaled(10)))
            if frame["type"] == "subscribed":
                break
            assert frame["type"] in ("authenticated", "resync", "event"), frame
