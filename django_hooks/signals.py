"""post_migrate: give watched tables their triggers, in test databases too.

Django sends post_migrate once per app after every migrate, including the
one that builds a test database, so tests see real events without a step of
their own. Installing is idempotent, so running it once per signal is cheap.
At the default verbosity it prints one line per model whose triggers it
installed or changed (nothing for those already up to date), so a developer
sees that migrate did something and where the changes now go.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from django.apps import AppConfig
from django.db import connections, router

from . import conf, triggers, watch

logger = logging.getLogger("django_hooks")


def install_triggers(
    sender: AppConfig, *, using: str = "default", verbosity: int = 1, **kwargs: Any
) -> None:
    """Install the triggers of the watched models that belong to the migrated app."""
    if not conf.get("INSTALL_ON_MIGRATE"):
        return
    if connections[using].vendor != "postgresql":
        return
    for entry in conf.watched():
        try:
            target = watch.resolve(entry)
        except watch.WatchError:
            continue  # checks.py reports it
        if target.model._meta.app_config is not sender:
            continue
        if not router.allow_migrate_model(using, target.model):
            continue
        before = triggers.state(target, using)
        if not before.table_exists:
            continue
        channel = triggers.install(target, using)
        if not before.installed:
            done = "Installed"
        elif triggers.stale_reasons(target, before):
            done = "Updated"
        elif verbosity >= 2:
            done = "Checked"
        else:
            continue
        if verbosity >= 1:
            out = kwargs.get("stdout") or sys.stdout
            out.write(f"  {done} bridge triggers on {target.db_table} ({target.label}):"
                      f" {triggers.describe(target, channel)}\n")
