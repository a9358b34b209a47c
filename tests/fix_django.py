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

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.django_site import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Site,
    serve_example,
)
from tests.fix_db import PgServer, temporary_database

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
    from django.db import connection, transaction

    if connection.connection is not None and not connection.is_usable():
        connection.close()  # an earlier test restarted PostgreSQL: reconnect
    with transaction.atomic():
        yield django_setup
        transaction.set_rollback(True)


# The example project, served -------------------------------------------------


@pytest.fixture
def example_site(db_url: str) -> Iterator[Site]:
    """A migrated database with users alice (id 7) and bob (id 8), Django and the daemon."""
    with serve_example(db_url, "example.settings", ("--legacy-window", "300ms")) as site:
        yield site


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


@pytest.fixture
def page(chromium: Any) -> Iterator[Any]:
    """A fresh page in its own browser context (no cookies shared between tests)."""
    context = chromium.new_context()
    new_page = context.new_page()
    yield new_page
    context.close()
