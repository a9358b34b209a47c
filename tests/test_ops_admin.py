"""The Django admin's "Bridge" page: numbers from real daemons' /metrics, refreshed in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.test import Client, override_settings
from websockets.sync.client import connect

from tests.django_site import REPO, child_env, free_port, stop_process, wait_http
from tests.fix_bridge import execute, token
from tests.fix_db import PgServer, temporary_database
from tests.ops_support import BridgeProcess
from tests.timing import scaled

PAGE = "/admin/django_hooks/bridge/"


@pytest.fixture
def metrics_daemon(watched_db: str) -> Iterator[BridgeProcess]:
    """A real daemon with --metrics-port, ready."""
    daemon = BridgeProcess(watched_db, metrics_port=free_port()).start()
    try:
        assert daemon.proc is not None
        wait_http(daemon.http + "/readyz", daemon.proc)
        yield daemon
    finally:
        daemon.stop()


@contextmanager
def subscriber(daemon: BridgeProcess) -> Iterator[Any]:
    """A /v1 client subscribed to a row channel, for as long as the block runs."""
    with connect(daemon.url, open_timeout=scaled(10)) as ws:
        ws.send(json.dumps({"type": "auth", "token": token(1, "example_task")}))
        ws.send(json.dumps({"type": "subscribe", "channel": "example_task:owner_id=4"}))
        while json.loads(ws.recv(timeout=scaled(10)))["type"] != "subscribed":
            pass
        yield ws


def staff_client(superuser: bool = True, username: str = "ops") -> Client:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username, password="pw", is_staff=True,
                                                is_superuser=superuser)
    client = Client()
    client.force_login(user)
    return client


def test_bridge_page_reads_the_daemons_metrics(
    django_db: str, metrics_daemon: BridgeProcess
) -> None:
    """A superuser sees the page in the admin, and metrics.json carries clients and channels."""
    dead = f"http://127.0.0.1:{free_port()}/metrics"
    urls = [metrics_daemon.metrics_url, dead]
    with subscriber(metrics_daemon), override_settings(BRIDGE={"METRICS_URLS": urls}):
        client = staff_client()
        index = client.get("/admin/")
        assert PAGE in index.content.decode()
        page = client.get(PAGE)
        assert page.status_code == 200
        html = page.content.decode()
        assert "django_hooks/bridge_admin.js" in html and 'id="bridge-rate-chart"' in html
        assert f'data-url="{PAGE}metrics.json"' in html
        data = client.get(PAGE + "metrics.json").json()
    alive, down = data["daemons"]
    assert alive["ok"] and alive["url"] == metrics_daemon.metrics_url
    assert alive["instance"].startswith("pg_notify_bridge ") and alive["listener_up"]
    assert not down["ok"] and down["url"] == dead and down["error"]
    totals = data["totals"]
    assert (totals["daemons"], totals["up"], totals["ready"]) == (2, 1, 1)
    assert totals["clients"] == 1 and totals["subscriptions"] == 1
    assert totals["channels"] == {"example_task": 1}


def test_bridge_page_needs_the_view_permission(django_db: str) -> None:
    """Staff without django_hooks.view_bridge get 403; a visitor is sent to the login page."""
    with override_settings(BRIDGE={"METRICS_URLS": []}):
        assert Client().get(PAGE).status_code == 302
        client = staff_client(superuser=False, username="staff-only")
        assert client.get(PAGE).status_code == 403
        assert client.get(PAGE + "metrics.json").status_code == 403
        page = staff_client(username="root").get(PAGE)
        assert page.status_code == 200


@pytest.mark.parametrize(("bridge", "url"), [
    ({}, "http://127.0.0.1:8765/metrics"),
    ({"PORT": 9001}, "http://127.0.0.1:9001/metrics"),
    ({"PORT": 9001, "HOST": "0.0.0.0"}, "http://127.0.0.1:9001/metrics"),
    ({"PORT": 9001, "HOST": "::1"}, "http://[::1]:9001/metrics"),
    ({"PORT": 9001, "METRICS_PORT": 9101}, "http://127.0.0.1:9101/metrics"),
    ({"METRICS_URLS": "http://10.0.0.5:9801/metrics"}, "http://10.0.0.5:9801/metrics"),
])
def test_metrics_urls_default_to_the_settings_own_daemon(
    django_db: str, bridge: dict[str, Any], url: str
) -> None:
    """Without METRICS_URLS the page reads the daemon the same BRIDGE dict configures."""
    from django_hooks import admin_views

    with override_settings(BRIDGE=bridge):
        assert admin_views.metrics_urls() == [url]


def test_bridge_page_reads_its_own_daemon_without_metrics_urls(
    django_db: str, metrics_daemon: BridgeProcess
) -> None:
    """With no METRICS_URLS the page reads the settings' daemon and says how to add others."""
    port = int(metrics_daemon.metrics_url.rsplit(":", 1)[1].split("/")[0])
    with subscriber(metrics_daemon), override_settings(BRIDGE={"METRICS_PORT": port}):
        client = staff_client()
        html = client.get(PAGE).content.decode()
        assert f"Reading the daemon these settings configure, <code>{metrics_daemon.metrics_url}" \
            in html and 'BRIDGE["METRICS_URLS"]' in html
        data = client.get(PAGE + "metrics.json").json()
    (daemon,) = data["daemons"]
    assert daemon["ok"] and daemon["listener_up"] and data["totals"]["subscriptions"] == 1


SEED = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
User.objects.create_superuser("ops", "ops@example.org", "ops-pw")
"""


@pytest.fixture
def admin_site(pg_server: PgServer, metrics_daemon: BridgeProcess) -> Iterator[str]:
    """The example project on tests.ops_settings (METRICS_URLS = the daemon's), served.

    Its own database: the page reads the daemon's metrics, never the daemon's database.
    """
    with temporary_database(pg_server, "admin_site") as db_url:
        yield from _serve_admin(db_url, metrics_daemon)


def _serve_admin(db_url: str, metrics_daemon: BridgeProcess) -> Iterator[str]:
    port = free_port()
    env = child_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="tests.ops_settings",
                    BRIDGE_TEST_METRICS_URLS=metrics_daemon.metrics_url)
    subprocess.run([sys.executable, "-m", "example", "shell", "-v0", "-c", SEED], env=env,
                   cwd=REPO, check=True, timeout=scaled(120))
    django = subprocess.Popen(
        [sys.executable, "-m", "example", "runserver", "--noreload", f"127.0.0.1:{port}"],
        env=env, cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(base + "/admin/login/", django)
        yield base
    finally:
        stop_process(django)


def test_bridge_page_refreshes_in_chromium(
    admin_site: str, metrics_daemon: BridgeProcess, watched_db: str, chromium: Any
) -> None:
    """In Chromium the page updates by itself: a new client shows, then an event rate."""
    context = chromium.new_context()
    page = context.new_page()
    deadline = scaled(30) * 1000
    try:
        page.goto(f"{admin_site}/admin/login/?next={PAGE}")
        page.fill("#id_username", "ops")
        page.fill("#id_password", "ops-pw")
        page.click("input[type=submit]")
        page.wait_for_url(f"{admin_site}{PAGE}")
        assert page.text_content("#bridge-clients") == "0"
        assert page.text_content("#bridge-ready") == "1 / 1"
        with subscriber(metrics_daemon):
            page.wait_for_function(
                "document.getElementById('bridge-clients').textContent === '1'",
                timeout=deadline)
            execute(watched_db, "INSERT INTO example_task (title, owner_id)"
                    " SELECT 't', 4 FROM generate_series(1, 3)")
            page.wait_for_function(
                "parseFloat(document.getElementById('bridge-rate').textContent) > 0",
                timeout=deadline)
        assert int(page.get_attribute("#bridge-rate-chart", "data-points") or 0) >= 1
        rows = page.locator("#bridge-daemons tbody tr")
        assert rows.count() == 1 and "ready" in (rows.first.text_content() or "")
        assert page.text_content("#bridge-channels tbody") == "example_task1"
    finally:
        context.close()
