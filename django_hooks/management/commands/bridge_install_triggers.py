"""Install (or remove, or print) the capture triggers of the watched models."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections

from bridge import install as bridge_install
from bridge.errors import BridgeError

from ... import triggers, watch


class Command(BaseCommand):
    help = (
        "Install the pg-notify-bridge triggers of the models in BRIDGE['MODELS'] (all, or the"
        " app_label.Model names given); the same SQL as `python -m bridge install-triggers`."
    )
    # Its own checks would warn about the very triggers it is about to install.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("models", nargs="*", metavar="app_label.Model",
                            help="watched models to act on (default: all of BRIDGE['MODELS'])")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS,
                            choices=tuple(connections),
                            help="the database to install into (default: default)")
        parser.add_argument("--dry-run", action="store_true",
                            help="print the SQL instead of running it")
        parser.add_argument("--uninstall", action="store_true",
                            help="remove the triggers instead (past events stay in the log)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            targets = watch.targets(options["models"])
        except watch.WatchError as exc:
            raise CommandError(str(exc)) from exc
        if not targets:
            raise CommandError(
                "no watched models: list them in BRIDGE['MODELS'], e.g."
                " {'app.Model': {'channel_column': 'owner_id'}}"
            )
        using = options["database"]
        if options["dry_run"] and not options["uninstall"]:
            # Exactly what `python -m bridge install-triggers --dry-run` prints: the
            # schema once, then each table's statements.
            self.stdout.write(bridge_install.schema_sql() + "\n")
        try:
            for target in targets:
                self._one(target, using, options)
        except (BridgeError, ValueError) as exc:
            raise CommandError(str(exc)) from exc

    def _one(self, target: watch.Target, using: str, options: dict[str, Any]) -> None:
        if options["dry_run"]:
            if options["uninstall"]:
                self.stdout.write(f"-- would remove the triggers of {target.db_table}")
                return
            for statement in triggers.plan_sql(target, using):
                self.stdout.write(statement + ";")
            return
        if options["uninstall"]:
            triggers.uninstall(target, using)
            self.stdout.write(f"Removed the triggers of {target.db_table} ({target.label})")
            return
        channel = triggers.install(target, using)
        self.stdout.write(f"Installed triggers on {target.db_table} ({target.label}):"
                          f" {triggers.describe(target, channel)}")
