"""post_migrate: give watched tables their triggers, in test databases too.

Django sends post_migrate once per app after every migrate, including the
one that builds a test database, so tests see real events without a step of
their own. Installing is idempotent, so running it once per signal is cheap.
"""

from __future__ import annotations

import logging
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
        if not triggers.state(target, using).table_exists:
            continue
        channel = triggers.install(target, using)
        if verbosity >= 2:
            print(f"  Installed bridge triggers on {target.db_table} (channel {channel})")
