"""Errors name the fix for the way the daemon was started (pip CLI or Django), in one line."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.errors import NoSchemaError, PortInUseError
from tests.django_site import REPO, child_env, free_port, stop_process
from tests.ops_support import run_serve
from tests.timing import scaled


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something else is listening on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


def test_messages_name_pip_or_django_commands() -> None:
    """Without Django the fix is a `python -m bridge` command, with Django a manage.py one."""
    assert "python -m bridge install-triggers TABLE" in NoSchemaError().for_user(django=False)
    django = NoSchemaError().for_user(django=True)
    assert "python manage.py migrate" in django and "bridge_install_triggers" in django
    assert "make " not in django
    port = PortInUseError("127.0.0.1", 8765, "--port")
    assert str(port) == ("127.0.0.1:8765 is already in use (is another bridge still running?):"
                         " stop it, or choose another port with --port or BRIDGE_PORT")
    assert port.for_user(django=True).endswith(
        "stop it, or set BRIDGE['PORT'] in the settings (or run"
        " `python manage.py runbridge --port N`)")
    metrics = PortInUseError("127.0.0.1", 9000, "--metrics-port").for_user(django=True)
    assert "BRIDGE['METRICS_PORT']" in metrics and "runbridge -- --metrics-port N" in metrics


def test_busy_port_is_one_line_naming_the_flag(watched_db: str, busy_port: int) -> None:
    """`serve` on a taken port exits 2 with one line naming --port and BRIDGE_PORT."""
    code, output = run_serve(watched_db, "--port", str(busy_port))
    assert code == 2, output
    assert output.strip() == (
        f"error: 127.0.0.1:{busy_port} is already in use (is another bridge still running?):"
        f" stop it, or choose another port with --port or BRIDGE_PORT")


def test_busy_metrics_port_names_metrics_port(watched_db: str, busy_port: int) -> None:
    """A taken --metrics-port is named as such, not as --port."""
    code, output = run_serve(watched_db, "--metrics-port", str(busy_port))
    assert code == 2, output
    assert f"127.0.0.1:{busy_port} is already in use" in output
    assert "--metrics-port or BRIDGE_METRICS_PORT" in output and "Traceback" not in output


def runbridge(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = child_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="example.settings")
    return subprocess.run([sys.executable, "-m", "example", "runbridge", *args], env=env,
                          cwd=REPO, capture_output=True, text=True, timeout=scaled(120))


def test_runbridge_before_migrate_names_manage_py(db_url: str) -> None:
    """runbridge on a database that was never migrated names manage.py migrate, not make."""
    result = runbridge(db_url, "--noreload", "--port", "0")
    assert result.returncode != 0
    assert ("error: the database has no bridge schema: run `python manage.py migrate`"
            in result.stderr), result.stderr
    assert "make install-triggers" not in result.stderr and "Traceback" not in result.stderr


def test_runbridge_on_a_busy_port_names_the_setting(watched_db: str, busy_port: int) -> None:
    """runbridge on a taken port names BRIDGE['PORT'] and runbridge --port."""
    result = runbridge(watched_db, "--noreload", "--port", str(busy_port))
    assert result.returncode != 0
    assert "set BRIDGE['PORT'] in the settings" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_unimportable_settings_say_where_python_looked(tmp_path: Path, db_url: str) -> None:
    """--django-settings that cannot be imported names the directory, PYTHONPATH and the fix."""
    env = child_env(DATABASE_URL=db_url)
    env.pop("PYTHONPATH")
    result = subprocess.run([sys.executable, "-m", "bridge", "serve", "--django-settings",
                             "shop.settings"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=scaled(60))
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: cannot import Django settings 'shop.settings': No module named 'shop'"
        f" (searched the working directory {tmp_path}, PYTHONPATH=unset): run it from the"
        " directory that holds manage.py, or set PYTHONPATH to that directory (systemd:"
        " WorkingDirectory= and Environment=PYTHONPATH=)")


def test_settings_that_import_a_missing_package_name_it(tmp_path: Path, db_url: str) -> None:
    """Settings that import an uninstalled package say to install it, not to move directory."""
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "__init__.py").write_text("")
    (tmp_path / "shop" / "settings.py").write_text("import no_such_package_xyz\n")
    env = child_env(DATABASE_URL=db_url)
    result = subprocess.run([sys.executable, "-m", "bridge", "serve", "--django-settings",
                             "shop.settings"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=scaled(60))
    assert result.returncode == 2
    assert "(the settings import 'no_such_package_xyz'): install it where the bridge runs" \
        in result.stderr


def test_serving_is_logged_only_once_ready(watched_db: str) -> None:
    """With the database unreachable the daemon says so and does not claim to be serving."""
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--port", "0",
         "--database-url", dead, "--secret-key", "k" * 40],
        env=child_env(), cwd=REPO, stderr=subprocess.PIPE, text=True, start_new_session=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        end = time.monotonic() + scaled(60)
        while time.monotonic() < end and not any("reconnecting" in line for line in lines):
            lines.append(proc.stderr.readline())  # pytest-timeout ends a hang here
    finally:
        stop_process(proc)  # type: ignore[arg-type]
    assert any("database unreachable" in line for line in lines), lines
    assert not any("serving" in line for line in lines), lines
