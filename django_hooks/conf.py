"""The BRIDGE settings dict, read in one place, with its defaults.

The daemon reads the same dict (``python -m bridge --django-settings``): keys
named like its flags (``PORT``, ``TOKEN_MAX_AGE``, ``ALLOWED_ORIGINS``, ...)
configure it, the keys below configure the Django side, and each side ignores
the keys it does not know. So one dict describes one deployment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from bridge.config import check_bridge_setting, parse_duration

DEFAULTS: dict[str, Any] = {
    # "app_label.Model": {"channel": None, "channel_column": None}, or a list of labels.
    "MODELS": {},
    # The daemon's port as browsers reach it; PUBLIC_PORT when a proxy moves it.
    "PORT": 8765,
    "PUBLIC_PORT": None,
    # Full /v1 URL for bridge.js; None builds ws(s)://<request host>:<port>/v1.
    "URL": None,
    # wss:// and Secure cookies; None follows request.is_secure().
    "SECURE": None,
    "TOKEN_MAX_AGE": 3600,
    # Dotted path of ``f(user, channels) -> list[str]``: the channels a user may read.
    "CHANNELS_FOR_USER": "django_hooks.tokens.default_channels_for_user",
    # Set the bridge_token cookie for legacy pages (middleware), for these channels
    # (None: every watched model's channel).
    "COOKIE": True,
    "COOKIE_CHANNELS": None,
    # Overrides settings.SECRET_KEY for signing (the daemon reads it too).
    "SECRET_KEY": None,
    # Install triggers for watched models after migrate (test databases too).
    "INSTALL_ON_MIGRATE": True,
    # The daemons' /metrics URLs (their --metrics-port, or the main port without one),
    # a list or one URL: the admin's "Bridge" page reads them server-side.
    "METRICS_URLS": [],
}


@dataclass(frozen=True)
class Watched:
    """A model the bridge watches, and how its table's channels are named."""

    label: str
    channel: str | None = None
    channel_column: str | None = None


def get(name: str) -> Any:
    """One BRIDGE setting, or its default; read at call time so override_settings works."""
    user = getattr(settings, "BRIDGE", None) or {}
    return user.get(name, DEFAULTS[name])


def secret_key() -> str:
    """The key that signs tokens: BRIDGE['SECRET_KEY'], else SECRET_KEY."""
    if get("SECRET_KEY"):
        return str(get("SECRET_KEY"))
    try:
        return settings.SECRET_KEY or ""
    except ImproperlyConfigured:  # Django refuses to hand out an empty SECRET_KEY
        return ""


def fallback_keys() -> list[str]:
    """Old keys that still verify (the daemon takes them from SECRET_KEY_FALLBACKS too)."""
    return list(getattr(settings, "SECRET_KEY_FALLBACKS", []) or [])


def token_max_age() -> float:
    """Token lifetime in seconds; accepts the daemon's duration syntax (``1h``)."""
    return parse_duration(get("TOKEN_MAX_AGE"))


def public_port() -> int:
    return int(get("PUBLIC_PORT") or get("PORT"))


def watched() -> list[Watched]:
    """The BRIDGE['MODELS'] entries, as given (checks.py validates the models they name).

    An entry with an unknown key raises ImproperlyConfigured rather than being read
    without it: a misspelt channel_column would otherwise grant every user the
    whole table. `manage.py check` reports the same as django_hooks.E010.
    """
    errors, _ = check_bridge_setting({"MODELS": get("MODELS")})
    if errors:
        raise ImproperlyConfigured(f"{errors[0].message}: {errors[0].hint}")
    models = get("MODELS") or {}
    if isinstance(models, Mapping):
        return [Watched(label, **_options(opts)) for label, opts in models.items()]
    return [Watched(label) for label in models]


def _options(opts: Any) -> dict[str, Any]:
    opts = dict(opts or {})
    return {"channel": opts.get("channel"), "channel_column": opts.get("channel_column")}


def channel_for(name: str) -> str:
    """The channel a template, refetchOn() or the token view means by `name`.

    A model label (``"orders.Order"``, any case, optionally with a row suffix
    ``":owner_id=7"``) becomes its watched model's channel, as BRIDGE['MODELS']
    names it; anything else is taken as a channel name as before, so table
    names keep working. A label of an installed model that is not watched is
    an error naming the fix: silently subscribing to a channel nobody fills
    would leave the page stale forever. This is the only place labels become
    channels: the tags, the token view and {% live %} all call it.
    """
    from . import watch  # watch imports this module

    head, sep, rest = name.partition(":")
    entry = _watched_by_label().get(head.lower())
    if entry is None:
        if not _is_model_label(head):
            if "." in head and head != head.lower():
                raise watch.WatchError(
                    f"{head!r} is not an installed model: write a model label as"
                    " \"app_label.ModelName\" (see INSTALLED_APPS), or a channel name"
                )
            return name
        raise watch.WatchError(
            f"{head!r} is a model but not in BRIDGE['MODELS']: add it there (with its"
            " channel options) so it gets triggers and a channel"
        )
    return watch.resolve(entry).channel + sep + rest


def _watched_by_label() -> dict[str, Watched]:
    return {entry.label.lower(): entry for entry in watched()}


def _is_model_label(name: str) -> bool:
    """Whether `name` is "app_label.ModelName" of an installed model."""
    from django.apps import apps

    if name.count(".") != 1:
        return False
    try:
        apps.get_model(name)
    except (LookupError, ValueError):
        return False
    return True
