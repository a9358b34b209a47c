"""System checks: `manage.py check` says what keeps the bridge from working, and how to fix it.

IDs:
    E001  no key to sign tokens with
    E002  a BRIDGE['MODELS'] entry is not a model, or names no such channel column
    E003  a watched model's table has no primary key
    E004  a watched model's channel is not a valid channel name
    E005  BRIDGE['TOKEN_MAX_AGE'] is not a duration
    E006  BRIDGE['MODELS'] is set but the default database is not PostgreSQL
    W001  a watched model's table has no triggers
    W002  a watched model's triggers are stale (key, channel or channel column changed,
          or the table was recreated without them)
    W003  no DjangoTemplates backend has the request context processor, which the
          {% bridge_client %} tag needs to know the user
    E010  a BRIDGE['MODELS'] entry has an unknown key (a misspelt channel_column would
          grant every user the whole table), or BRIDGE or MODELS has the wrong shape
    E011  the signing key (or a fallback) is shorter than 32 characters, or published
    W010  the signing key (or a fallback) is below Django's security.W009 threshold
          (`check --deploy` only, as W009 is: startproject's development key has it)
    W011  BRIDGE has a key nothing reads (the closest valid one is named)
    W101  live regions: LiveRenderMiddleware after a middleware that may query first
    W102  live regions: LiveRenderMiddleware with the per-site cache

E010, E011, W010 and W011 apply bridge.config's rules, which the daemon
applies to the same settings (`--django-settings`): both sides refuse alike.

The database checks (E003, W001, W002) run against the databases Django
passes (``check --database``, migrate, the test runner), or else the default
one; a database that cannot be reached is skipped silently, as Django's own
checks do, since connecting is not this app's job to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections

from bridge import channels as channel_names
from bridge import config as bridge_config
from bridge.errors import ConfigError

from . import conf, triggers, watch


def register() -> None:
    checks.register(check_settings, "django_hooks")
    checks.register(check_models, "django_hooks")
    checks.register(check_triggers, "django_hooks")
    checks.register(check_bridge_keys, "django_hooks")
    checks.register(check_key_strength, "django_hooks")
    checks.register(check_key_weakness, "django_hooks", deploy=True)
    checks.register(check_database_engine, "django_hooks")
    checks.register(check_request_context, "django_hooks", checks.Tags.templates)
    checks.register(check_live, "django_hooks")


def check_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E001 and E005: what signing tokens needs."""
    errors: list[checks.CheckMessage] = []
    if not conf.secret_key():
        errors.append(
            checks.Error(
                "pg-notify-bridge has no key to sign tokens with",
                hint="set SECRET_KEY, or BRIDGE['SECRET_KEY'] (the daemon needs the same key)",
                id="django_hooks.E001",
            )
        )
    try:
        conf.token_max_age()
    except (TypeError, ValueError):
        errors.append(
            checks.Error(
                f"BRIDGE['TOKEN_MAX_AGE'] is {conf.get('TOKEN_MAX_AGE')!r}, not a duration",
                hint="use seconds or a duration such as '30m' or '1h'",
                id="django_hooks.E005",
            )
        )
    return errors


def check_bridge_keys(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E010 and W011: every key of BRIDGE and of its MODELS entries means something."""
    errors, warnings = bridge_config.check_bridge_setting(getattr(settings, "BRIDGE", None) or {})
    return [checks.Error(p.message, hint=p.hint, id="django_hooks.E010") for p in errors] + [
        checks.Warning(p.message, hint=p.hint, id="django_hooks.W011") for p in warnings
    ]


def check_key_strength(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E011: the signing key and its fallbacks pass the daemon's own key rule."""
    return _key_messages()[0]


def check_key_weakness(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W010 (`check --deploy`, like Django's own W009): a key the daemon only warns about."""
    return _key_messages()[1]


def _key_messages() -> tuple[list[checks.CheckMessage], list[checks.CheckMessage]]:
    where = "BRIDGE['SECRET_KEY']" if conf.get("SECRET_KEY") else "SECRET_KEY"
    keys = [(where, conf.secret_key())] if conf.secret_key() else []  # E001 covers none
    keys += [(f"SECRET_KEY_FALLBACKS[{n}]", key) for n, key in enumerate(conf.fallback_keys())]
    errors: list[checks.CheckMessage] = []
    warnings: list[checks.CheckMessage] = []
    for name, key in keys:
        try:
            weak = bridge_config.check_secret_key(str(key), name)
        except ConfigError as exc:
            errors.append(checks.Error(str(exc), hint="the bridge daemon refuses this key too",
                                       id="django_hooks.E011"))
            continue
        warnings += [checks.Warning(text, id="django_hooks.W010") for text in weak]
    return errors, warnings


def check_models(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E002 and E004: every BRIDGE['MODELS'] entry resolves to a model and a valid channel."""
    errors: list[checks.CheckMessage] = []
    try:
        entries = conf.watched()
    except ImproperlyConfigured:
        return []  # check_bridge_keys reports it (E010)
    for entry in entries:
        try:
            target = watch.resolve(entry)
        except watch.WatchError as exc:
            errors.append(
                checks.Error(
                    str(exc),
                    hint="BRIDGE['MODELS'] takes 'app_label.Model' keys and a channel_column"
                    " that is a field or column of that model",
                    id="django_hooks.E002",
                )
            )
            continue
        if not channel_names.BASE_RE.match(target.channel):
            errors.append(
                checks.Error(
                    f"{target.label}'s channel {target.channel!r} is not a valid channel name",
                    hint="set a 'channel' for it in BRIDGE['MODELS']: lower case letters,"
                    " digits, _ and .",
                    obj=target.model,
                    id="django_hooks.E004",
                )
            )
    return errors


def check_triggers(
    app_configs: Any = None, databases: Sequence[str] | None = None, **kwargs: Any
) -> list[checks.CheckMessage]:
    """E003, W001, W002: compare each watched table with what its triggers were built for."""
    messages: list[checks.CheckMessage] = []
    for alias in databases or ["default"]:
        if alias not in connections or connections[alias].vendor != "postgresql":
            continue
        for target in _targets():
            try:
                state = triggers.state(target, alias)
            except Exception:  # unreachable database: not ours to report
                break
            messages.extend(_compare(target, state, alias))
    return messages


def check_database_engine(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """E006: watched models on SQLite or MySQL would get no triggers and no error.

    Without it `check` says "no issues", `migrate` skips the triggers and only
    `runbridge` refuses, long after the project was set up on the wrong database.
    """
    try:
        if not conf.watched() or "default" not in connections:
            return []
    except ImproperlyConfigured:
        return []  # check_bridge_keys reports it (E010)
    vendor = connections["default"].vendor
    if vendor == "postgresql":
        return []
    return [
        checks.Error(
            f"BRIDGE['MODELS'] watches models, but the default database is {vendor}:"
            " pg-notify-bridge needs PostgreSQL (13 or later) for its triggers and NOTIFY",
            hint="for development, `python manage.py bridge_devdb` starts a local PostgreSQL"
            " and prints the DATABASES setting to use; otherwise point DATABASES['default']"
            " at your PostgreSQL",
            id="django_hooks.E006",
        )
    ]


REQUEST_PROCESSOR = "django.template.context_processors.request"


def check_request_context(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W003: without `request` in the context the tag cannot see the user.

    It then renders no token and whole-table channel names, which looks like
    working code until the page stays offline or the daemon refuses it.
    """
    django_backends = [t for t in settings.TEMPLATES
                       if t.get("BACKEND") == "django.template.backends.django.DjangoTemplates"]
    if not django_backends or any(
        REQUEST_PROCESSOR in (t.get("OPTIONS") or {}).get("context_processors", ())
        for t in django_backends
    ):
        return []
    return [
        checks.Warning(
            f"no DjangoTemplates backend has {REQUEST_PROCESSOR!r}: the {{% bridge_client %}}"
            " tag cannot see request.user and renders no token",
            hint=f"add {REQUEST_PROCESSOR!r} to TEMPLATES[0]['OPTIONS']['context_processors']"
            " (startproject puts it there)",
            id="django_hooks.W003",
        )
    ]


def _targets() -> Iterable[watch.Target]:
    try:
        entries = conf.watched()
    except ImproperlyConfigured:
        return  # check_bridge_keys reports it (E010)
    for entry in entries:
        try:
            yield watch.resolve(entry)
        except watch.WatchError:
            continue


def _compare(
    target: watch.Target, state: triggers.State, alias: str
) -> list[checks.CheckMessage]:
    if not state.table_exists:
        return []  # not migrated yet; post_migrate installs the triggers
    if not state.pk_columns:
        return [
            checks.Error(
                f"table {target.db_table} of {target.label} has no primary key",
                hint="events name rows by their primary key: add one to the table",
                obj=target.model,
                id="django_hooks.E003",
            )
        ]
    install = f"run: python manage.py bridge_install_triggers {target.label}"
    if alias != "default":
        install += f" --database {alias}"
    if not state.installed:
        return [
            checks.Warning(
                f"table {target.db_table} of {target.label} has no bridge triggers"
                f" (database {alias!r}): its changes reach nobody",
                hint=install,
                obj=target.model,
                id="django_hooks.W001",
            )
        ]
    stale = triggers.stale_reasons(target, state)
    if not stale:
        return []
    return [
        checks.Warning(
            f"bridge triggers of {target.db_table} ({target.label}) are stale: "
            + "; ".join(stale),
            hint=install,
            obj=target.model,
            id="django_hooks.W002",
        )
    ]


LIVE_MIDDLEWARE = "django_hooks.positions.LiveRenderMiddleware"
# Middleware known not to query the database on the way in (sessions and users load lazily,
# in the view): the render position may be read after them.
NO_QUERY_MIDDLEWARE = frozenset({
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.gzip.GZipMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_hooks.middleware.BridgeCookieMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "corsheaders.middleware.CorsMiddleware",
})
CACHE_MIDDLEWARE = ("django.middleware.cache.UpdateCacheMiddleware",
                    "django.middleware.cache.FetchFromCacheMiddleware",
                    "django.middleware.cache.CacheMiddleware")


def check_live(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """W101, W102: what keeps live regions from their exact handoff (docs/django.md); W003
    covers the request context processor they need too."""
    from django.conf import settings

    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    if LIVE_MIDDLEWARE not in middleware:
        return []
    found: list[checks.CheckMessage] = []
    before = middleware[:middleware.index(LIVE_MIDDLEWARE)]
    unknown = [name for name in before if name not in NO_QUERY_MIDDLEWARE]
    if unknown:
        found.append(checks.Warning(
            f"{LIVE_MIDDLEWARE} comes after {', '.join(unknown)}: a page's data read there"
            " is read before the render position, and a change in between could be missed",
            hint=f"move {LIVE_MIDDLEWARE!r} to the top of MIDDLEWARE",
            id="django_hooks.W101",
        ))
    cached = [name for name in middleware if name in CACHE_MIDDLEWARE]
    if cached:
        found.append(checks.Warning(
            f"{cached[0]} caches whole pages: a cached page with a live region carries"
            " another user's token and a render position as old as the cache",
            hint="cache the views without live regions only (cache_page), not the site",
            id="django_hooks.W102",
        ))
    return found
