"""The app config: registers the system checks and the post_migrate trigger installer."""

from __future__ import annotations

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DjangoHooksConfig(AppConfig):
    name = "django_hooks"
    verbose_name = "pg-notify-bridge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, signals

        checks.register()
        post_migrate.connect(signals.install_triggers, dispatch_uid="django_hooks.install_triggers")
