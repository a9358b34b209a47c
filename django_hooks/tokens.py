"""Mint bridge tokens: which channels a user may read, signed the way the daemon checks.

The daemon only verifies (DESIGN.md, "Token"); Django decides. The decision
is a settings hook, BRIDGE['CHANNELS_FOR_USER'], because only the project
knows its own permissions. The default grants only a watched model's channel,
and where the model has a channel column only the user's own rows of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core import signing
from django.utils.module_loading import import_string

from bridge import channels as channel_names

from . import conf, watch

SALT = "pg_notify_bridge.token"
COOKIE_NAME = "bridge_token"


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


def mint(user_id: str | None, channels: Iterable[str], *, ttl: float | None = None) -> str:
    """A token for `user_id` granting `channels`; `ttl` seconds shortens it below max age."""
    payload: dict[str, Any] = {"u": user_id, "ch": list(channels)}
    if ttl is not None:
        payload["exp"] = int(time.time() + ttl)
    return signing.dumps(payload, key=conf.secret_key(), salt=SALT)


def for_user(user: Any, requested: Iterable[str]) -> tuple[str | None, list[str]]:
    """A token for `user` covering what the hook grants of `requested` (None when nothing)."""
    granted = channels_for_user(user, requested)
    if not granted:
        return None, []
    return mint(user_key(user), granted), granted


def read(token: str, max_age: float | None = None) -> dict[str, Any] | None:
    """The payload of a valid token (signature, age, `exp`), else None; as the daemon checks."""
    try:
        payload = signing.TimestampSigner(
            key=conf.secret_key(), salt=SALT, fallback_keys=conf.fallback_keys()
        ).unsign_object(token, max_age=conf.token_max_age() if max_age is None else max_age)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict):
        return None
    exp = payload.get("exp")
    if exp is not None and (not isinstance(exp, (int, float)) or exp < time.time()):
        return None
    return payload


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
