"""The management commands: bridge_install_triggers, bridge_token and runbridge, for real."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core import signing
from django.core.management import call_command
from django.core.management.base import CommandError

from bridge import install
from bridge.auth import Verifier
from django_hooks.triggers import raw_connection
from tests.django_site import REPO, child_env, free_port, http_ok, stop_process, wait_http
from tests.timing import scaled


def make_user(username: str):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username)


def trigger_count() -> int:
    row = raw_connection("default").execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'example_task'::regclass"
        " AND tgname LIKE 'pg\\_notify\\_bridge\\_%'"
    ).fetchone()
    return int(row[0]) if row else 0


def watched_row() -> tuple[str, str | None] | None:
    return raw_connection("default").execute(
        "SELECT channel, channel_column FROM bridge.watched WHERE tbl = 'public.example_task'"
    ).fetchone()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_install_triggers_installs_what_settings_say(django_db: str) -> None:
    """Installing after an uninstall restores four triggers with the settings' channel column."""
    run("bridge_install_triggers", "--uninstall")
    assert trigger_count() == 0 and watched_row() is None
    out = run("bridge_install_triggers", "example.Task")
    assert out == (
        "Installed triggers on example_task (example.Task): channel example_task,"
        " rows also to example_task:owner_id=<value>\n"
    )
    assert trigger_count() == 4
    assert watched_row() == ("example_task", "owner_id")


def test_install_triggers_is_idempotent(django_db: str) -> None:
    """Running it twice leaves exactly one set of triggers."""
    run("bridge_install_triggers")
    run("bridge_install_triggers")
    assert trigger_count() == 4


def test_dry_run_prints_sql_and_changes_nothing(django_db: str) -> None:
    """--dry-run prints the CREATE statements of bridge.install.plan and runs none of them."""
    run("bridge_install_triggers", "--uninstall")
    out = run("bridge_install_triggers", "--dry-run")
    assert "CREATE TRIGGER" in out and "AFTER TRUNCATE ON" in out
    assert '"public"."example_task"' in out and "example_task:owner_id=" in out
    assert trigger_count() == 0 and watched_row() is None


def test_dry_run_prints_what_the_bridge_cli_prints(django_db: str) -> None:
    """--dry-run prints the schema SQL and the plan exactly as `python -m bridge
    install-triggers --dry-run` (make install-triggers) does for the same table."""
    cli = subprocess.run(
        [sys.executable, "-m", "bridge", "install-triggers", "public.example_task",
         "--channel-column", "owner_id", "--dry-run", "--database-url", django_db],
        env=child_env(), cwd=REPO, check=True, capture_output=True, text=True, timeout=60,
    ).stdout
    assert cli.startswith(install.schema_sql())
    assert run("bridge_install_triggers", "example.Task", "--dry-run") == cli


def test_unknown_model_is_a_command_error(django_db: str) -> None:
    """A model that is not watched is refused with the setting to change."""
    with pytest.raises(CommandError, match=r"'auth.User' is not in BRIDGE\['MODELS'\]"):
        run("bridge_install_triggers", "auth.User")


def test_a_model_whose_table_is_in_the_bridge_schema_is_refused(django_db: str) -> None:
    """A watched model that resolves to a table of the bridge schema is a CommandError, dry or not.

    The search_path puts a bridge.example_task in front of public's, as a
    project's search_path setting could; the atomic block of django_db undoes both.
    """
    conn = raw_connection("default")
    conn.execute("CREATE TABLE bridge.example_task (id bigint PRIMARY KEY, owner_id int)")
    conn.execute("SET LOCAL search_path = bridge, public")
    for extra in ((), ("--dry-run",)):
        with pytest.raises(CommandError, match=r"^bridge\.example_task belongs to the bridge"
                           r" itself: watching it would log every log write in an endless loop"):
            run("bridge_install_triggers", "example.Task", *extra)
    assert conn.execute(
        "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'bridge.example_task'::regclass"
    ).fetchone() == (0,)


def test_database_option_only_takes_known_aliases(django_db: str) -> None:
    """--database offers the configured aliases, like createcachetable."""
    with pytest.raises(CommandError, match="invalid choice: 'other'"):
        run("bridge_install_triggers", "--database", "other")


def test_bridge_token_prints_a_token_the_daemon_accepts(django_db: str) -> None:
    """bridge_token's output verifies with the daemon's Verifier and grants what was asked."""
    user = make_user("carol")
    token = run("bridge_token", "--user", "carol", "--channel", "example_task,other.ch").strip()
    grant = Verifier(key=_key()).verify(token)
    assert grant.channels == frozenset({"example_task", "other.ch"})
    assert signing.loads(token, salt="pg_notify_bridge.token")["u"] == str(user.pk)


def _key() -> str:
    from django.conf import settings

    return str(settings.SECRET_KEY)


def test_bridge_token_ttl_sets_exp(django_db: str) -> None:
    """--ttl adds an `exp` a few minutes ahead."""
    make_user("dave")
    token = run("bridge_token", "--user", "dave", "--channel", "example_task", "--ttl", "5m")
    payload = signing.loads(token.strip(), salt="pg_notify_bridge.token")
    assert set(payload) == {"u", "ch", "exp"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--user", "nobody", "--channel", "x"], "no user 'nobody'"),
        (["--user", "erin", "--channel", "Bad Name"], "'Bad Name' is not a valid channel name"),
        (["--user", "erin", "--channel", "x", "--ttl", "soon"], "--ttl: 'soon' is not a duration"),
    ],
)
def test_bridge_token_refuses_bad_input(django_db: str, args: list[str], message: str) -> None:
    """Unknown users, malformed channels and bad durations are command errors."""
    make_user("erin")
    with pytest.raises(CommandError, match=message):
        run("bridge_token", *args)


def test_runbridge_argv_comes_from_django_settings(django_db: str) -> None:
    """runbridge hands the daemon the database and settings module Django uses; the daemon
    reads the key from that module, so its key errors name SECRET_KEY, not a flag."""
    from bridge.__main__ import build_parser
    from bridge.config import resolve
    from django_hooks.management.commands.runbridge import Command

    argv = Command().argv({"database": "default", "host": None, "port": "9999",
                           "daemon_args": ["--", "--allow-anonymous", "x"]})
    assert argv[0] == "serve"
    assert argv[argv.index("--django-settings") + 1] == "example.settings"
    assert "--secret-key" not in argv
    assert resolve(build_parser().parse_args(argv)).secret_key == _key()
    assert "dbname=t_django_" in argv[argv.index("--database-url") + 1]
    assert argv[-4:] == ["--port", "9999", "--allow-anonymous", "x"]


def test_runbridge_failure_is_a_command_error(django_db: str) -> None:
    """A daemon that cannot start makes runbridge fail with its exit status."""
    with pytest.raises(CommandError, match="the bridge exited with status"):
        run("runbridge", "--noreload", "--", "--log-level", "LOUD")


def test_runbridge_serves_until_sigterm(db_url: str) -> None:
    """`manage.py runbridge` runs a daemon that gets ready, and stops cleanly on SIGTERM."""
    env = child_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="example.settings")
    subprocess.run([sys.executable, "-m", "example", "migrate", "-v0"], env=env, cwd=REPO,
                   check=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "example", "runbridge", "--port", str(port)],
                            env=env, cwd=REPO, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc)
    finally:
        stop_process(proc)
    assert proc.returncode == 0


def test_migrate_says_which_triggers_it_installed_or_changed(django_db: str) -> None:
    """migrate prints one line per model it gave triggers or changed them, none when current."""
    from django.test import override_settings

    run("bridge_install_triggers", "--uninstall")
    out = run("migrate")
    assert out.count("bridge triggers") == 1
    assert ("  Installed bridge triggers on example_task (example.Task): channel example_task,"
            " rows also to example_task:owner_id=<value>\n") in out
    assert "bridge triggers" not in run("migrate")
    with override_settings(BRIDGE={"MODELS": ["example.Task"]}):
        assert ("  Updated bridge triggers on example_task (example.Task): channel"
                " example_task\n") in run("migrate")
    # -v0 changes them back (settings want owner_id again) without a word.
    assert "bridge triggers" not in run("migrate", "-v0")
    assert watched_row() == ("example_task", "owner_id")
    assert "bridge triggers" not in run("migrate")


def test_runbridge_restarts_when_the_settings_change(watched_db: str, tmp_path: Path) -> None:
    """Like runserver, runbridge reloads on a settings edit: a new BRIDGE['PORT'] takes effect."""
    first, second = free_port(), free_port()
    settings = tmp_path / "reload_settings.py"
    template = 'from example.settings import *\nBRIDGE = {{**BRIDGE, "PORT": {port}}}\n'
    settings.write_text(template.format(port=first))
    env = child_env(DATABASE_URL=watched_db, DJANGO_SETTINGS_MODULE="reload_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    proc = subprocess.Popen([sys.executable, "-m", "example", "runbridge"], env=env, cwd=REPO,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{first}/readyz", proc)
        # The reloader may take its first snapshot of the files after the daemon is up:
        # an edit before it is not a change. Edit again (a new mtime) until one is seen.
        deadline = time.monotonic() + scaled(90)
        while True:
            settings.write_text(template.format(port=second))
            try:
                wait_http(f"http://127.0.0.1:{second}/readyz", proc, timeout=5)
                break
            except TimeoutError:
                assert time.monotonic() < deadline, "runbridge never reloaded"
        assert not http_ok(f"http://127.0.0.1:{first}/readyz")
    finally:
        stop_process(proc)
    assert proc.returncode == 0
