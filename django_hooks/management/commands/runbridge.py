"""Run the bridge daemon from the Django settings, as the original management command did.

Equivalent to ``python -m bridge serve --django-settings <settings>``: the
key, the database and the BRIDGE dict come from Django; flags given here win.
Like ``runserver`` it restarts when a Python file of the project changes
(Django's autoreloader), so an edited BRIDGE dict takes effect at once;
``--noreload`` turns that off, as production and process managers want.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import autoreload

from bridge.config import django_database_url

from ... import conf


def database_url(alias: str) -> str:
    """A libpq conninfo string for a Django database alias."""
    url = django_database_url(connections[alias].settings_dict)
    if connections[alias].vendor != "postgresql" or url is None:
        raise CommandError(
            f"database {alias!r} is {connections[alias].vendor}, not PostgreSQL: the bridge"
            " needs PostgreSQL 13 or later; `python manage.py bridge_devdb` starts a local one"
            " for development and prints the DATABASES entry to use"
        )
    return url


class Command(BaseCommand):
    help = "Run the pg-notify-bridge daemon with this project's key, database and BRIDGE settings."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, choices=tuple(connections),
                            help="the database to listen on (default: default)")
        parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", help="port to listen on (default BRIDGE['PORT'] or 8765)")
        parser.add_argument("--noreload", action="store_false", dest="use_reloader",
                            help="do not restart when the settings or code change")
        parser.add_argument("daemon_args", nargs=argparse.REMAINDER,
                            help="more daemon flags after --, as `python -m bridge serve` takes")

    def handle(self, *args: Any, **options: Any) -> None:
        argv = self.argv(options)
        if options.get("use_reloader"):
            # The daemon runs in a thread of the reloaded child process, as runserver's
            # server does; a changed file ends that process and a new one starts.
            autoreload.run_with_reloader(self.serve, argv)
        else:
            self.serve(argv)

    def serve(self, argv: list[str]) -> None:
        from bridge.__main__ import main

        code = main(argv)
        if code:
            raise CommandError(f"the bridge exited with status {code}", returncode=code)

    def argv(self, options: dict[str, Any]) -> list[str]:
        """The `python -m bridge` arguments this command stands for."""
        argv = ["serve", "--database-url", database_url(options["database"])]
        module = getattr(settings, "SETTINGS_MODULE", None)
        if module:
            # The daemon reads BRIDGE['SECRET_KEY'], else SECRET_KEY, from the module, as
            # conf.secret_key() does, and then names that setting in its key errors.
            argv += ["--django-settings", module]
        elif conf.secret_key():
            argv += ["--secret-key", conf.secret_key()]
        if options["host"]:
            argv += ["--host", options["host"]]
        if options["port"]:
            argv += ["--port", str(options["port"])]
        extra = list(options["daemon_args"] or [])
        if extra[:1] == ["--"]:
            extra = extra[1:]
        return argv + extra
