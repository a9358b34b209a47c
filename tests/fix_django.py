"""Django fixtures: the example project in-process, and as real servers for the browser.

In-process (``django_db``): Django is set up once per session with
``example.settings``, pointed at a session database of the suite's
PostgreSQL and migrated (so post_migrate installs the triggers, as in any
project). Each test runs inside an atomic block that is rolled back.

Out of process (``example_site``): a fresh database migrated by
``python -m example``, the Django development server and the bridge daemon
as child processes on free ports, for Chromium to talk to. Nothing is mocked.

Loaded with ``pytest_plugins = ["tests.fix_django"]`` in the test modules that use it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest

from tests.fix_db import PgServer, temporary_database
from tests.timing import scaled

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


# In-process Django ------------------------------------------------------------


@pytest.fixture(scope="session")
def django_setup(pg_cluster: PgServer) -> Iterator[str]:
    """Django configured with example.settings on a migrated session database; its URL."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    import django
    from django.conf import settings

    import example.settings as example_settings

    with temporary_database(pg_cluster, "django") as url:
        settings.DATABASES["default"] = {
            **example_settings.database_from_url(url),
            "TEST": {"NAME": None},
        }
        django.setup()
        from django.core.management import call_command
        from django.test.utils import setup_test_environment

        setup_test_environment()
        from django.db import connections

        call_command("migrate", verbosity=0)
        yield url
        connections.close_all()


@pytest.fixture
def django_db(django_setup: str) -> Iterator[str]:
    """Run the test in a transaction that is rolled back, like django.test.TestCase."""
    from django.db import transaction

    with transaction.atomic():
        yield django_setup
        transaction.set_rollback(True)


# Processes --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    """Wait (generously) until `url` answers 200, failing early if `proc` died."""
    import time

    end = time.monotonic() + scaled(timeout)
    while not http_ok(url):
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode} before {url} was up")
        if time.monotonic() > end:
            raise TimeoutError(f"{url} did not answer within {scaled(timeout):g}s")
        time.sleep(0.05)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(scaled(15))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@dataclass
class Daemon:
    """`python -m bridge serve` as a child process, which a test may stop and start again."""

    env: dict[str, str]
    port: int
    args: tuple[str, ...] = ()
    cwd: Path = REPO
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1",
             "--port", str(self.port), *self.args],
            env=self.env, cwd=self.cwd, start_new_session=True,
        )
        wait_http(f"http://127.0.0.1:{self.port}/readyz", self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None


@dataclass
class Site:
    """The example project served for real: Django, the daemon, and its database."""

    db_url: str
    base: str
    daemon: Daemon
    django: subprocess.Popen[bytes]
    users: dict[str, int] = field(default_factory=dict)

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> None:
        """Run one statement with psql-like autocommit, as any other writer would."""
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            conn.execute(statement, params)  # type: ignore[arg-type]


SEED = """
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from example.models import Task
for pk, name in ((7, "alice"), (8, "bob")):
    user = User.objects.create_user(id=pk, username=name, password=name + "-pw")
    for n in range(3):
        Task.objects.create(title=f"{name} task {n}", owner=user)
"""


@pytest.fixture
def example_site(db_url: str) -> Iterator[Site]:
    """A migrated database with users alice (id 7) and bob (id 8), Django and the daemon."""
    bridge_port, http_port = free_port(), free_port()
    env = child_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="example.settings",
                    BRIDGE_PORT=str(bridge_port))
    subprocess.run([sys.executable, "-m", "example", "shell", "-v0", "-c", SEED],
                   env=env, cwd=REPO, check=True, timeout=scaled(120))
    daemon = Daemon(env, bridge_port, ("--django-settings", "example.settings",
                                       "--legacy-window", "300ms"))
    django = subprocess.Popen(
        [sys.executable, "-m", "example", "runserver", "--noreload", f"127.0.0.1:{http_port}"],
        env=env, cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        daemon.start()
        base = f"http://127.0.0.1:{http_port}"
        wait_http(base + "/accounts/login/", django)
        yield Site(db_url, base, daemon, django, {"alice": 7, "bob": 8})
    finally:
        stop_process(django)
        daemon.stop()


# Chromium ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium():  # type: ignore[no-untyped-def]
    """Debian's Chromium driven by Playwright (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("needs /usr/bin/chromium (apt-get install chromium; .ci/run does it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def log_in(page, base: str, username: str, next_url: str) -> None:  # type: ignore[no-untyped-def]
    """Log in through the example's login form, landing on `next_url`."""
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", username + "-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_url}")
