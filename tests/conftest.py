"""Shared fixtures (loaded as plugins, one ``fix_*.py`` per concern) and hooks."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.timing import TIMEOUT_FACTOR

# No key in the repository signs anything, tests' keys included: one random key per run,
# inherited by every child process (Django, daemons) through the environment.
os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))

pytest_plugins = ["tests.fix_db", "tests.fix_bridge", "tests.fix_django", "tests.fix_wheel"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Scale pytest-timeout's per-test limit by the suite's one TIMEOUT_FACTOR."""
    if TIMEOUT_FACTOR == 1 or not config.pluginmanager.hasplugin("timeout"):
        return
    base = float(config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        seconds = float(marker.args[0]) if marker and marker.args else base
        if seconds > 0:
            item.add_marker(pytest.mark.timeout(seconds * TIMEOUT_FACTOR))
