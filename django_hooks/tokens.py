"""Mint bridge tokens: which channels a user may read, signed the way the daemon checks.

The daemon only verifies (docs/protocol.md, "Tokens"); Django decides which
channels a user gets. Minting and reading go through bridge.auth.Verifier,
the daemon's own code, so the two sides cannot disagree on the salt, the
cookie name or what makes a token valid. The decision
is a settings hook, BRIDGE['CHANNELS_FOR_USER'], because only the project
knows its own permissions. The default grants only a watched model's channel,
and where the model has a channel column only the user's own rows of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from bridge import channels as channel_names
from bridge.auth import COOKIE, Grant, TokenError, Verifier
from bridge.config import check_secret_key
from bridge.errors import ConfigError

from . import conf, watch

COOKIE_NAME = COOKIE


def default_channels_for_user(user: Any, requested: Iterable[str]) -> list[str]:
    """Grant only watched models' channels, narrowed to the user's own rows where a channel
    column is set; drop everything else.

    A requested name is granted only when its table channel belongs to a model in
    BRIDGE['MODELS']: a table with triggers that is not listed there stays closed,
    whatever a template or a `/bridge/token?channel=` asks. For a model with a
    channel column, both `tasks` and any `tasks:<col>=<value>` become
    `tasks:<col>=<user.pk>`; for one without, the table channel is granted and its
    row channels are dropped. Staff get nothing more: a project that wants whole
    tables for some users supplies its own hook. Anonymous users get nothing: give
    them channels with the daemon's --allow-anonymous instead.
    """
    if user is None or not user.is_authenticated:
        return []
    granted = []
    for name in requested:
        base = name.partition(":")[0]
        target = watch.by_channel(base)
        if target is None:
            continue
        if target.channel_column:
            granted.append(f"{base}:{target.channel_column}={user.pk}")
        elif name == base:
            granted.append(base)
    return granted


def channels_for_user(user: Any, requested: Iterable[str]) -> list[str]:
    """Ask the BRIDGE['CHANNELS_FOR_USER'] hook; keep only well-formed names, in order."""
    hook: Callable[[Any, list[str]], Iterable[str]] = import_string(conf.get("CHANNELS_FOR_USER"))
    result: list[str] = []
    for name in hook(user or AnonymousUser(), list(requested)):
        if channel_names.is_valid(name) and name not in result:
            result.append(name)
    return result


def user_key(user: Any) -> str | None:
    """The `u` of a token: the user's pk as a string (a UUID or any other key type fits
    JSON that way), None for an anonymous user."""
    if user is None or not user.is_authenticated:
        return None
    return str(user.pk)


def verifier(max_age: float | None = None) -> Verifier:
    """The daemon's Verifier with this project's keys and BRIDGE['TOKEN_MAX_AGE'];
    ImproperlyConfigured for a key the daemon would refuse (signing_key)."""
    return Verifier(signing_key(), conf.fallback_keys(),
                    conf.token_max_age() if max_age is None else max_age)


def mint(user_id: str | None, channels: Iterable[str], *, ttl: float | None = None) -> str:
    """A token for `user_id` granting `channels`; `ttl` seconds shortens it below max age."""
    return verifier().make(user_id, channels, ttl)


def signing_key() -> str:
    """The key to sign and check with, if the daemon would accept it (bridge.config's rule);
    else ImproperlyConfigured, so no token is ever signed with a short or published key."""
    key = conf.secret_key()
    try:
        check_secret_key(key, "BRIDGE['SECRET_KEY']" if conf.get("SECRET_KEY") else "SECRET_KEY")
    except ConfigError as exc:
        raise ImproperlyConfigured(str(exc)) from exc
    return key


def for_user(user: Any, requested: Iterable[str]) -> tuple[str | None, list[str]]:
    """A token for `user` covering what the hook grants of `requested` (None when nothing)."""
    granted = channels_for_user(user, requested)
    if not granted:
        return None, []
    return mint(user_key(user), granted), granted


def read(token: str, max_age: float | None = None) -> Grant | None:
    """The grant of a token the daemon would accept (signature, age, `exp`), else None."""
    try:
        return verifier(max_age).verify(token)
    except TokenError:
        return None


def cookie_channels() -> list[str]:
    """The channels asked for on behalf of legacy pages (the cookie's token)."""
    chosen = conf.get("COOKIE_CHANNELS")
    if chosen is not None:
        return list(chosen)
    names = []
    for entry in conf.watched():
        try:
            names.append(watch.resolve(entry).channel)
        except watch.WatchError:
            continue
    return names
