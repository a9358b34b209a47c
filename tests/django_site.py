"""Helpers for tests that run the example project for real: ports, children, the site.

Plain functions and classes (no fixtures), so test modules can import them
before pytest loads tests.fix_django as a plugin.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.timing import scaled

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the in-process tests set it for themselves
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

    def first_task(self, owner: int) -> int:
        """The id of a user's first task (the seed gives each user three)."""
        with psycopg.connect(self.db_url) as conn:
            row = conn.execute("SELECT min(id) FROM example_task WHERE owner_id = %s",
                               (owner,)).fetchone()
        assert row and row[0]
        return int(row[0])


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


def log_in(page, base: str, username: str, next_url: str) -> None:  # type: ignore[no-untyped-def]
    """Log in through the example's login form, landing on `next_url`."""
    page.goto(f"{base}/accounts/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", username + "-pw")
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}{next_url}")


@contextlib.contextmanager
def serve_example(db_url: str, settings: str, daemon_args: Sequence[str]) -> Iterator[Site]:
    """Seed `db_url` (alice 7, bob 8), then serve the example with Django `settings` on one
    free port and the daemon (`--django-settings example.settings` plus `daemon_args`) on
    another; both are stopped on the way out."""
    bridge_port, http_port = free_port(), free_port()
    env = child_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE=settings,
                    BRIDGE_PORT=str(bridge_port))
    subprocess.run([sys.executable, "-m", "example", "shell", "-v0", "-c", SEED],
                   env=env, cwd=REPO, check=True, timeout=scaled(120))
    daemon = Daemon({**env, "DJANGO_SETTINGS_MODULE": "example.settings"}, bridge_port,
                    ("--django-settings", "example.settings", *daemon_args))
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
