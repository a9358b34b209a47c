"""django_hooks system checks, compared as whole Error/Warning objects, on real PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from django.core import checks
from django.test import override_settings

from bridge import install as bridge_install
from django_hooks import checks as hook_checks
from django_hooks.triggers import raw_connection
from tests.django_site import child_env

TASK = {"example.Task": {"channel_column": "owner_id"}}
HINT = "run: python manage.py bridge_install_triggers example.Task"


def run_all() -> list[checks.CheckMessage]:
    return [
        *hook_checks.check_settings(),
        *hook_checks.check_models(),
        *hook_checks.check_triggers(databases=["default"]),
        *hook_checks.check_bridge_keys(),
        *hook_checks.check_key_strength(),
        *hook_checks.check_key_weakness(),
    ]


def raw():  # type: ignore[no-untyped-def]
    """Django's psycopg connection, inside the test's transaction (so it is rolled back)."""
    return raw_connection("default")


def task_model():  # type: ignore[no-untyped-def]
    from example.models import Task

    return Task


def test_migrated_example_passes_every_check(django_db: str) -> None:
    """A migrated project (post_migrate installed the triggers) has nothing to report."""
    assert run_all() == []


def test_registered_checks_run_under_manage_py_check(django_db: str) -> None:
    """The checks are registered in ready(), so `check` itself reports them."""
    with override_settings(BRIDGE={"MODELS": ["example.Nope"]}):
        found = [m.id for m in checks.run_checks(databases=["default"])]
    assert "django_hooks.E002" in found


def test_empty_secret_key_is_e001(django_db: str) -> None:
    """No key to sign tokens with is an error that names both settings."""
    with override_settings(SECRET_KEY="", BRIDGE={}):
        assert hook_checks.check_settings() == [
            checks.Error(
                "pg-notify-bridge has no key to sign tokens with",
                hint="set SECRET_KEY, or BRIDGE['SECRET_KEY'] (the daemon needs the same key)",
                id="django_hooks.E001",
            )
        ]


def test_unknown_model_is_e002(django_db: str) -> None:
    """A BRIDGE['MODELS'] label that is not a model is reported with the label."""
    with override_settings(BRIDGE={"MODELS": ["example.Nope"]}):
        assert hook_checks.check_models() == [
            checks.Error(
                "BRIDGE['MODELS'] names 'example.Nope', which is not a model",
                hint="BRIDGE['MODELS'] takes 'app_label.Model' keys and a channel_column"
                " that is a field or column of that model",
                id="django_hooks.E002",
            )
        ]


def test_unknown_channel_column_is_e002(django_db: str) -> None:
    """A channel column that is neither a field nor a column of the model is an error."""
    with override_settings(BRIDGE={"MODELS": {"example.Task": {"channel_column": "team"}}}):
        assert hook_checks.check_models() == [
            checks.Error(
                "example.Task has no field or column 'team'",
                hint="BRIDGE['MODELS'] takes 'app_label.Model' keys and a channel_column"
                " that is a field or column of that model",
                id="django_hooks.E002",
            )
        ]


def test_invalid_channel_is_e004(django_db: str) -> None:
    """A channel outside the contract's grammar is an error pointing at the model."""
    with override_settings(BRIDGE={"MODELS": {"example.Task": {"channel": "Tasks-1"}}}):
        assert hook_checks.check_models() == [
            checks.Error(
                "example.Task's channel 'Tasks-1' is not a valid channel name",
                hint="set a 'channel' for it in BRIDGE['MODELS']: lower case letters,"
                " digits, _ and .",
                obj=task_model(),
                id="django_hooks.E004",
            )
        ]


def test_bad_token_max_age_is_e005(django_db: str) -> None:
    """TOKEN_MAX_AGE must parse as the daemon's durations do."""
    with override_settings(BRIDGE={"TOKEN_MAX_AGE": "soon"}):
        assert hook_checks.check_settings() == [
            checks.Error(
                "BRIDGE['TOKEN_MAX_AGE'] is 'soon', not a duration",
                hint="use seconds or a duration such as '30m' or '1h'",
                id="django_hooks.E005",
            )
        ]


def test_missing_triggers_is_w001(django_db: str) -> None:
    """A watched table without triggers is a warning whose hint is the command to run."""
    bridge_install.uninstall(raw(), "example_task")
    assert hook_checks.check_triggers(databases=["default"]) == [
        checks.Warning(
            "table example_task of example.Task has no bridge triggers (database 'default'):"
            " its changes reach nobody",
            hint=HINT,
            obj=task_model(),
            id="django_hooks.W001",
        )
    ]


def test_changed_channel_column_is_w002(django_db: str) -> None:
    """Triggers built without the channel column the settings now ask for are stale."""
    bridge_install.install(raw(), "example_task")
    assert hook_checks.check_triggers(databases=["default"]) == [
        checks.Warning(
            "bridge triggers of example_task (example.Task) are stale: channel column is None"
            " in the database, 'owner_id' here",
            hint=HINT,
            obj=task_model(),
            id="django_hooks.W002",
        )
    ]


def test_dropped_triggers_are_w002(django_db: str) -> None:
    """Triggers dropped behind the registry's back (a recreated table) are reported stale."""
    raw().execute("DROP TRIGGER pg_notify_bridge_insert ON example_task")
    assert hook_checks.check_triggers(databases=["default"]) == [
        checks.Warning(
            "bridge triggers of example_task (example.Task) are stale: its triggers are"
            " missing (was the table recreated?)",
            hint=HINT,
            obj=task_model(),
            id="django_hooks.W002",
        )
    ]


def test_table_without_primary_key_is_e003(django_db: str) -> None:
    """A watched table with no primary key cannot name its rows: an error."""
    raw().execute("ALTER TABLE example_task DROP CONSTRAINT example_task_pkey")
    assert hook_checks.check_triggers(databases=["default"]) == [
        checks.Error(
            "table example_task of example.Task has no primary key",
            hint="events name rows by their primary key: add one to the table",
            obj=task_model(),
            id="django_hooks.E003",
        )
    ]


@pytest.mark.parametrize("databases", [None, ["default"]])
def test_trigger_checks_use_default_without_databases(django_db: str, databases) -> None:  # type: ignore[no-untyped-def]
    """Plain `manage.py check` (no --database) still looks at the default database."""
    bridge_install.uninstall(raw(), "example_task")
    found = hook_checks.check_triggers(databases=databases)
    assert [m.id for m in found] == ["django_hooks.W001"]


# Keys (issue 13 item 6) ----------------------------------------------------------------

STRONG = "a-strong-key-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGH"
PUBLIC = "demo-only-insecure-key-pg-notify-bridge-do-not-deploy"
NEW_KEY = "generate a key with python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"


def test_short_or_published_keys_are_e011(django_db: str) -> None:
    """The key rule of bridge.config, as a system check: short or published keys are errors."""
    with override_settings(SECRET_KEY="short", SECRET_KEY_FALLBACKS=[PUBLIC],
                           BRIDGE={"MODELS": TASK}):
        assert hook_checks.check_key_strength() == [
            checks.Error(
                "SECRET_KEY is 5 characters long, too short to keep tokens from being forged:"
                f" use at least 32; {NEW_KEY} and put it in SECRET_KEY",
                hint="the bridge daemon refuses this key too",
                id="django_hooks.E011",
            ),
            checks.Error(
                "SECRET_KEY_FALLBACKS[0] is a key published in the pg-notify-bridge repository:"
                f" anyone can forge tokens with it; {NEW_KEY} and put it in"
                " SECRET_KEY_FALLBACKS[0]",
                hint="the bridge daemon refuses this key too",
                id="django_hooks.E011",
            ),
        ]
    with override_settings(BRIDGE={"MODELS": TASK, "SECRET_KEY": "x" * 31}):
        [error] = hook_checks.check_key_strength()
        assert error.id == "django_hooks.E011"
        assert error.msg.startswith("BRIDGE['SECRET_KEY'] is 31 characters long")


def test_weak_key_is_w010(django_db: str) -> None:
    """A key of 32 to 49 characters is a warning of `check --deploy`, as Django's W009 is."""
    with override_settings(SECRET_KEY="k" + "0123456789abcdefghijklmnopqrstuvwxyz"):
        assert hook_checks.check_key_strength() == []
        assert "django_hooks.W010" not in [m.id for m in checks.run_checks()]
        deploy = [m.id for m in checks.run_checks(include_deployment_checks=True)]
        assert "django_hooks.W010" in deploy
        assert hook_checks.check_key_weakness() == [
            checks.Warning(
                "SECRET_KEY is weak (37 characters, fewer than 50), as Django's check"
                f" security.W009 also says; {NEW_KEY} and put it in SECRET_KEY",
                id="django_hooks.W010",
            )
        ]
    with override_settings(SECRET_KEY=STRONG):
        assert hook_checks.check_key_weakness() == []


def test_no_token_is_signed_with_a_refused_key(django_db: str) -> None:
    """Minting or reading a token with a short or published key raises instead of signing."""
    from django.core.exceptions import ImproperlyConfigured

    from django_hooks import tokens

    for key in ("short", PUBLIC):
        with override_settings(SECRET_KEY=key), \
                pytest.raises(ImproperlyConfigured, match="SECRET_KEY is"):
            tokens.mint("1", ["example_task"])
    with override_settings(SECRET_KEY=STRONG):
        assert tokens.read(tokens.mint("1", ["example_task"])) is not None


# The BRIDGE dict (issue 13 item 10) ----------------------------------------------------


def test_unknown_key_in_a_models_entry_is_e010_and_grants_nothing(django_db: str) -> None:
    """`chanel_column` is an error, and the default hook refuses rather than grant the table."""
    from django.contrib.auth import get_user_model
    from django.core.exceptions import ImproperlyConfigured

    from django_hooks import tokens

    user = get_user_model().objects.create_user("mallory")
    with override_settings(BRIDGE={"MODELS": {"example.Task": {"chanel_column": "owner_id"}}}):
        assert hook_checks.check_bridge_keys() == [
            checks.Error(
                "BRIDGE['MODELS']['example.Task'] has an unknown key 'chanel_column'",
                hint="did you mean 'channel_column'?; an entry without its channel_column would"
                " grant every user the whole table",
                id="django_hooks.E010",
            )
        ]
        assert "django_hooks.E010" in [m.id for m in checks.run_checks(databases=["default"])]
        with pytest.raises(ImproperlyConfigured, match="has an unknown key 'chanel_column'"):
            tokens.default_channels_for_user(user, ["example_task"])


def test_unknown_top_level_bridge_key_is_w011_with_the_closest_name(django_db: str) -> None:
    """A misspelt top-level key is a warning naming the key it was probably meant to be."""
    with override_settings(BRIDGE={"MODELS": TASK, "COOKIE_CHANNEL": ["example_task"]}):
        assert hook_checks.check_bridge_keys() == [
            checks.Warning(
                "BRIDGE has an unknown key 'COOKIE_CHANNEL', which nothing reads",
                hint="did you mean 'COOKIE_CHANNELS'?",
                id="django_hooks.W011",
            )
        ]


def test_the_daemon_knows_every_key_the_django_side_reads(django_db: str) -> None:
    """bridge.config's list of Django-side keys is exactly django_hooks.conf's defaults."""
    from bridge.config import DJANGO_KEYS
    from django_hooks.conf import DEFAULTS

    assert sorted(DJANGO_KEYS) == sorted(DEFAULTS)


def test_request_context_processor_missing_is_w003(django_db: str) -> None:
    """A DjangoTemplates backend without the request processor gets W003 naming it."""
    from django.conf import settings

    backend = dict(settings.TEMPLATES[0])
    options = dict(backend.get("OPTIONS") or {})
    options["context_processors"] = [
        p for p in options.get("context_processors", [])
        if p != "django.template.context_processors.request"
    ]
    with override_settings(TEMPLATES=[{**backend, "OPTIONS": options}]):
        assert [(m.id, m.hint) for m in hook_checks.check_request_context()] == [(
            "django_hooks.W003",
            "add 'django.template.context_processors.request' to"
            " TEMPLATES[0]['OPTIONS']['context_processors'] (startproject puts it there)",
        )]
    assert hook_checks.check_request_context() == []


def test_postgresql_default_database_passes_e006(django_db: str) -> None:
    """The suite's PostgreSQL default database raises no E006."""
    assert hook_checks.check_database_engine() == []


SQLITE_SETTINGS = '''
from example.settings import *
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}}
'''


@pytest.mark.parametrize("command", ["check", "migrate"])
def test_sqlite_with_watched_models_is_e006(tmp_path: Path, command: str) -> None:
    """On SQLite, `check` and `migrate` fail with E006 naming bridge_devdb, not silence."""
    (tmp_path / "sqlite_settings.py").write_text(SQLITE_SETTINGS)
    env = child_env(DJANGO_SETTINGS_MODULE="sqlite_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run([sys.executable, "-m", "django", command], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "django_hooks.E006" in result.stderr
    assert "python manage.py bridge_devdb" in result.stderr


def test_runbridge_on_sqlite_names_bridge_devdb(tmp_path: Path) -> None:
    """runbridge on SQLite refuses with the vendor and the bridge_devdb recipe."""
    (tmp_path / "sqlite_settings.py").write_text(SQLITE_SETTINGS)
    env = child_env(DJANGO_SETTINGS_MODULE="sqlite_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run([sys.executable, "-m", "django", "runbridge", "--noreload"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "database 'default' is sqlite, not PostgreSQL" in result.stderr
    assert "python manage.py bridge_devdb" in result.stderr and "Traceback" not in result.stderr
