"""``make demo``: PostgreSQL, the example Django app and the bridge, wired up in one command.

Steps: start the embedded PostgreSQL under ``.pgdata/`` (or use
``DATABASE_URL``), migrate, install the triggers, seed tasks and an admin
user, then run Django and the bridge as child processes and print where to
look. Ctrl-C (SIGINT) or SIGTERM stops the children, then the PostgreSQL it
started: nothing is left running. The children run in their own session, so
the terminal's Ctrl-C reaches only this supervisor, which stops them in order;
on Linux they also get SIGTERM should the supervisor itself die.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from example import devdb, secretkey

REPO = Path(__file__).resolve().parent.parent
DEMO_DB = "example"
ADMIN = ("admin", "admin")  # demo only: printed on start
USERS = {
    "admin": ["Write the release notes", "Review the trigger benchmark", "Water the plants"],
    "bob": ["Bob's first task", "Bob's second task"],
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def wake(signum: int, frame: object) -> None:
        if signum != signal.SIGCHLD:
            _signalled.append(signum)
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
        signal.signal(signum, wake)
    started_pg: Path | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    try:
        url, started_pg = _database(args.datadir)
        _say(_key_source())
        env = _environment(url, args.bridge_port)
        _say("migrating the example project")
        _manage(env, "migrate", "--noinput", "-v0")
        _say("installing triggers on public.example_task (channel column owner_id)")
        _run(env, "-m", "bridge", "install-triggers", "public.example_task",
             "--channel-column", "owner_id")
        _manage(env, "shell", "-v0", "-c", _SEED)
        children.append(("django", _spawn(env, "-m", "example", "runserver", "--noreload",
                                          f"127.0.0.1:{args.http_port}")))
        children.append(("bridge", _spawn(env, "-m", "bridge", "serve", "--django-settings",
                                          "example.settings", "--host", "127.0.0.1",
                                          "--port", str(args.bridge_port))))
        _wait_ready(children, stop, args.http_port, args.bridge_port)
        base = f"http://127.0.0.1:{args.http_port}"
        print(
            f"\n  Task page:      {base}/tasks/   (the original snippet, unchanged)\n"
            f"  bridge.js page: {base}/live/\n"
            f"  Live region:    {base}/region/   ({{% live %}}, no script of its own)\n"
            f"  htmx page:      {base}/htmx/\n"
            f"  Admin:          {base}/admin/\n"
            f"  Log in as {ADMIN[0]} / {ADMIN[1]} (demo only; bob / bob sees other rows).\n"
            f"  Edit a task in the admin, in psql or in a second tab: open pages update.\n"
            f"  psql:           psql '{url}'\n"
            f"  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not (_signalled or _exited(children)):
            stop.wait(1.0)
            stop.clear()
        return _report_exit(children)
    except KeyboardInterrupt:
        print("\ndemo: interrupted: stopping", flush=True)
        return 130
    except (subprocess.CalledProcessError, devdb.DevDBError, _DemoError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup
        _stop_children(children)
        if started_pg is not None:
            _say("stopping PostgreSQL")
            devdb.stop(started_pg)


_signalled: list[int] = []  # SIGINT/SIGTERM received


class _DemoError(RuntimeError):
    """Something the demo cannot go on without; the message says what."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m example.demo", description=__doc__.split(
        "\n\n")[0])
    parser.add_argument("--http-port", type=int, default=8000, help="Django's port (8000)")
    parser.add_argument("--bridge-port", type=int, default=8765, help="the bridge's port (8765)")
    parser.add_argument("--datadir", type=Path, default=REPO / ".pgdata",
                        help="embedded PostgreSQL data (.pgdata); ignored with DATABASE_URL")
    return parser


def _say(text: str) -> None:
    print(f"demo: {text}", flush=True)


def _database(datadir: Path) -> tuple[str, Path | None]:
    """DATABASE_URL if set; else the embedded server (started here if it was not running)."""
    external = os.environ.get("DATABASE_URL", "").strip()
    if external:
        _say("using DATABASE_URL")
        return external, None
    was_running = devdb.is_running(datadir)
    _say(f"starting PostgreSQL in {datadir}" if not was_running else
         f"using the PostgreSQL already running in {datadir}")
    maintenance = devdb.start(datadir)
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (DEMO_DB,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    return devdb.with_dbname(maintenance, DEMO_DB), (None if was_running else datadir)


def _key_source() -> str:
    """Make this checkout's key if needed (example.settings reads it); say where it is."""
    for name in ("DJANGO_SECRET_KEY", "BRIDGE_SECRET_KEY"):
        if os.environ.get(name):
            return f"signing tokens with the key in {name}"
    where = secretkey.path()
    made = not where.exists()
    secretkey.ensure(where)
    return f"signing tokens with {'a new random key, kept in' if made else 'the key in'} {where}"


def _environment(url: str, bridge_port: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="example.settings",
               BRIDGE_PORT=str(bridge_port), PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _run(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, *args], env=env, cwd=REPO, check=True)


def _manage(env: dict[str, str], *args: str) -> None:
    _run(env, "-m", "example", *args)


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the demo dies (Linux), even by SIGKILL."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _spawn(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *args], env=env, cwd=REPO,
                            start_new_session=True, preexec_fn=_die_with_parent)


def _exited(children: list[tuple[str, subprocess.Popen[bytes]]]) -> bool:
    return any(proc.poll() is not None for _, proc in children)


def _wait_ready(children: list[tuple[str, subprocess.Popen[bytes]]], stop: threading.Event,
                http_port: int, bridge_port: int) -> None:
    """Wait until Django answers and the bridge is ready, or a child died, or Ctrl-C."""
    pending = {f"http://127.0.0.1:{http_port}/accounts/login/": "django",
               f"http://127.0.0.1:{bridge_port}/readyz": "bridge"}
    deadline = time.monotonic() + 60
    while pending:
        if _signalled:
            raise KeyboardInterrupt
        if _exited(children):
            raise _DemoError(_exit_text(children))
        if time.monotonic() > deadline:
            raise _DemoError(f"{', '.join(pending.values())} did not start within 60s")
        for url in list(pending):
            with contextlib.suppress(urllib.error.URLError, OSError), \
                    urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    del pending[url]
        stop.wait(0.2)


def _exit_text(children: list[tuple[str, subprocess.Popen[bytes]]]) -> str:
    return "; ".join(f"{name} exited with status {proc.returncode}"
                     for name, proc in children if proc.poll() is not None)


def _report_exit(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    if _exited(children):
        print(f"demo: {_exit_text(children)}: stopping", file=sys.stderr)
        return 1
    print("\ndemo: stopping", flush=True)
    return 0


def _stop_children(children: list[tuple[str, subprocess.Popen[bytes]]]) -> None:
    """SIGTERM each child's process group, wait, then SIGKILL what is left."""
    for _, proc in children:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, proc in children:
        try:
            proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"demo: {name} ignored SIGTERM: killing it", file=sys.stderr)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


_SEED = f"""
from django.contrib.auth import get_user_model
from example.models import Task
User = get_user_model()
admin, created = User.objects.get_or_create(username={ADMIN[0]!r},
    defaults={{"is_staff": True, "is_superuser": True, "email": "admin@example.org"}})
if created:
    admin.set_password({ADMIN[1]!r}); admin.save()
for name, titles in {USERS!r}.items():
    user = admin if name == {ADMIN[0]!r} else User.objects.get_or_create(username=name)[0]
    if name != {ADMIN[0]!r} and not user.has_usable_password():
        user.set_password(name); user.save()
    if not Task.objects.filter(owner=user).exists():
        Task.objects.bulk_create(Task(title=t, owner=user) for t in titles)
"""


if __name__ == "__main__":
    sys.exit(main())
