"""deploy/: the systemd unit passes systemd-analyze, the environment file resolves cleanly."""

from __future__ import annotations

import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import config
from tests.ops_support import DEPLOY

UNIT = DEPLOY / "systemd" / "pg-notify-bridge@.service"
ENV_FILE = DEPLOY / "pg-notify-bridge.env"


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"not KEY=VALUE: {line!r}"
            values[key] = value
    return values


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this venv's Python)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    text = UNIT.read_text()
    assert "/opt/pg-notify-bridge/venv/bin/python -m bridge serve --port %i" in text
    for option in ("NoNewPrivileges=yes", "ProtectSystem=strict", "DynamicUser=yes",
                   "KillSignal=SIGTERM", "RestartPreventExitStatus=2"):
        assert option in text, option
    text = text.replace("/opt/pg-notify-bridge/venv/bin/python", sys.executable)
    (tmp_path / UNIT.name).write_text(text)
    (tmp_path / "pg-notify-bridge@8801.service").symlink_to(UNIT.name)
    result = subprocess.run([analyze, "verify", str(tmp_path / "pg-notify-bridge@8801.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "pg-notify-bridge" not in result.stderr, result.stderr


def test_environment_file_names_real_options_and_resolves() -> None:
    """Every variable in the example environment file is an option; the set resolves once the
    placeholder key is replaced, and is refused until then."""
    values = read_env_file(ENV_FILE)
    known = {option.env_var for option in config.OPTIONS}
    assert set(values) <= known, set(values) - known
    with pytest.raises(config.ConfigError, match="BRIDGE_SECRET_KEY is 9 characters long"):
        config.resolve({}, values)  # the placeholder never signs anything
    key = secrets.token_urlsafe(50)
    resolved = config.resolve({}, {**values, "BRIDGE_SECRET_KEY": key})
    assert resolved.host == "127.0.0.1" and resolved.log_format == "json"
    assert resolved.trusted_proxies and resolved.drain_seconds == 5.0
    assert resolved.secret_key == key and resolved.warnings == ()
    assert key not in repr(resolved), "the key must not show in a repr"
    nginx = (DEPLOY / "nginx" / "pg-notify-bridge.conf").read_text()
    assert resolved.allowed_hosts == ("app.example.org",)  # nginx's server_name
    assert "server_name app.example.org;" in nginx


def test_django_systemd_unit_verifies(tmp_path: Path) -> None:
    """The Django-configured unit runs the daemon from the project's directory and verifies."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    unit = DEPLOY / "systemd" / "pg-notify-bridge-django.service"
    text = unit.read_text()
    for line in ("WorkingDirectory=/srv/shop", "Environment=PYTHONPATH=/srv/shop",
                 "-m bridge serve --django-settings shop.settings", "KillSignal=SIGTERM",
                 "RestartPreventExitStatus=2"):
        assert line in text, line
    project = tmp_path / "shop"
    project.mkdir()
    text = (text.replace("/srv/shop/venv/bin/python", sys.executable)
            .replace("/srv/shop", str(project)))
    (tmp_path / "shop-bridge.service").write_text(text)
    result = subprocess.run([analyze, "verify", str(tmp_path / "shop-bridge.service")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "shop-bridge" not in result.stderr, result.stderr
