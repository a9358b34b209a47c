"""One Config, built once from flags, BRIDGE_* variables, Django settings and defaults.

Each option is declared once in OPTIONS: its flag, its environment variable,
its parser, its default and its help. argparse, the environment, Django's
`BRIDGE` settings dict and the docs all read that one table, so they cannot
drift apart. Precedence: a flag beats its variable, which beats the Django
setting, which beats the default.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
import ipaddress
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(b|kib|kb|k|mib|mb|m)?\s*$", re.IGNORECASE)
_SIZES = {None: 1, "b": 1, "k": 1024, "kb": 1024, "kib": 1024, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20}


def parse_duration(text: str | float) -> float:
    """`500ms`, `30s`, `5m`, `24h`, `2d` or plain seconds, as seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    match = _DURATION_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration: use 500ms, 30s, 5m, 24h or seconds")
    return float(match.group(1)) * _UNITS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest of `1h`, `5m`, `20s`, `500ms` that says `seconds` exactly (for --help)."""
    for unit, size in (("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds * 1000:g}ms"


def parse_size(text: str | int) -> int:
    """`65536`, `64KiB`, `1MiB` as a number of bytes."""
    if isinstance(text, int):
        return text
    match = _SIZE_RE.match(text)
    if not match:
        raise ValueError(f"{text!r} is not a size: use bytes, 64KiB or 1MiB")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZES[unit]


def parse_int(text: str | int) -> int:
    """A whole number, from a flag's text or a Django setting's int."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if isinstance(text, str) and re.fullmatch(r"\s*\d+\s*", text):
        return int(text)
    raise ValueError(f"{text!r} is not a whole number")


def parse_bool(text: str | bool) -> bool:
    if isinstance(text, bool):
        return text
    if text.strip().lower() in ("1", "true", "yes", "on"):
        return True
    if text.strip().lower() in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{text!r} is not a boolean: use true or false")


def parse_list(values: str | Sequence[str]) -> tuple[str, ...]:
    """A repeated flag, a comma list, or both: `--x a,b --x c` is (a, b, c)."""
    items = [values] if isinstance(values, str) else list(values)
    return tuple(part.strip() for item in items for part in item.split(",") if part.strip())


_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_HOST_PATTERN_RE = re.compile(rf"\*|\.?{_LABEL}(\.{_LABEL})*")


def parse_hosts(values: str | Sequence[str]) -> tuple[str, ...]:
    """Host names as Django's ALLOWED_HOSTS writes them: `example.org`, `.example.org`
    (and its subdomains), an IP address (IPv6 with or without brackets), or `*`."""
    hosts = []
    for item in parse_list(values):
        host = item.lower().removesuffix(".")
        bare = host.removeprefix("[").removesuffix("]")
        try:
            if ":" in bare:
                host = f"[{ipaddress.IPv6Address(bare)}]"
        except ValueError:
            pass
        if "://" in host or "/" in host:
            raise ValueError(f"{item!r} is a URL: give only its host name, like"
                             f" {urlsplit(item).hostname or 'example.org'}")
        if not host.startswith("[") and ":" in host:
            raise ValueError(f"{item!r} has a port: give the host name alone (any port matches)")
        if not host.startswith("[") and not _HOST_PATTERN_RE.fullmatch(host):
            raise ValueError(f"{item!r} is not a host name: use example.org, .example.org,"
                             " an IP address or *")
        hosts.append(host)
    return tuple(hosts)


def parse_networks(values: str | Sequence[str]) -> tuple[Any, ...]:
    return tuple(ipaddress.ip_network(v, strict=False) for v in parse_list(values))


@dataclass(frozen=True)
class Option:
    """One configuration option, declared once for argparse, environment and Django."""

    name: str
    default: Any
    help: str
    parse: Callable[[Any], Any] = str
    env: str | None = None
    is_list: bool = False
    flag_only: bool = False  # a flag and a variable, never read from Django's BRIDGE dict
    metavar: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or "BRIDGE_" + self.name.upper()


OPTIONS: tuple[Option, ...] = (
    Option("database_url", None, "libpq URL or DSN of the PostgreSQL database",
           env="DATABASE_URL", metavar="URL"),
    Option("host", "127.0.0.1", "address to listen on; anything beyond loopback is explicit",
           metavar="ADDR"),
    Option("port", 8765, "WebSocket and HTTP port (0 picks a free one)", parse_int),
    Option("secret_key", None, "Django SECRET_KEY that signs tokens (at least 32 characters;"
           " prefer the variable or --secret-key-file: a command line is visible to every local"
           " user)", env="BRIDGE_SECRET_KEY", metavar="KEY"),
    Option("secret_key_file", None, "read the secret key from this file (its trailing newline"
           " dropped) instead of --secret-key", flag_only=True, metavar="FILE"),
    Option("secret_key_fallbacks", (), "old keys still accepted during a key rotation",
           parse_list, is_list=True, metavar="KEY"),
    Option("django_settings", None, "read SECRET_KEY, SECRET_KEY_FALLBACKS and the BRIDGE dict"
           " from this Django settings module", metavar="MODULE"),
    Option("token_max_age", 3600.0, "oldest token accepted (duration)", parse_duration,
           metavar="DURATION"),
    Option("allowed_origins", (), "browser origins allowed to connect (default: the host the"
           " client connected to, any port; * allows all)", parse_list, is_list=True,
           metavar="ORIGIN"),
    Option("allowed_hosts", (), "host names the daemon answers to, as Django's ALLOWED_HOSTS"
           " (.example.org for subdomains, * for any); loopback names always pass (default:"
           " the hosts of --allowed-origins and of a specific --host, or Django's"
           " ALLOWED_HOSTS with --django-settings)", parse_hosts, is_list=True, metavar="HOST"),
    Option("allow_anonymous", (), "channels open to clients without a token", parse_list,
           is_list=True, metavar="CHANNEL"),
    Option("legacy_channels", (), "narrow legacy `/` clients to these channels", parse_list,
           is_list=True, metavar="CHANNEL"),
    Option("legacy_window", 1.0, "legacy `updated` throttle window (duration)", parse_duration,
           metavar="DURATION"),
    Option("legacy_burst", 3, "legacy `updated` saved while nothing changes, sent at once"
           " before the throttle folds the rest into one per --legacy-window (1: a plain"
           " leading-edge window)", parse_int,
           metavar="N"),
    Option("retention", 86400.0, "how long the event log keeps events (duration)",
           parse_duration, metavar="DURATION"),
    Option("log_level", "INFO", "DEBUG, INFO, WARNING or ERROR", str.upper, metavar="LEVEL"),
    Option("log_format", "text", "text or json", str.lower, metavar="FORMAT"),
    Option("metrics_port", None, "serve /metrics on this loopback port instead of the public"
           " one", parse_int, metavar="PORT"),
    Option("max_frame_size", 65536, "largest client frame; bigger ones close with 1009",
           parse_size, metavar="BYTES"),
    Option("max_subscriptions", 100, "subscriptions per connection", parse_int, metavar="N"),
    Option("max_bad_messages", 20, "bad messages per minute before closing with 4029", parse_int,
           metavar="N"),
    Option("auth_timeout", 5.0, "time a /v1 client without any channel has to authenticate",
           parse_duration, metavar="DURATION"),
    Option("handshake_timeout", 10.0, "time a client has to finish the opening handshake",
           parse_duration, metavar="DURATION"),
    Option("max_connections_per_ip", 0, "connections per client address (0: no limit)", parse_int,
           metavar="N"),
    Option("trusted_proxies", (), "proxy networks whose X-Forwarded-For is believed",
           parse_networks, is_list=True, metavar="CIDR"),
    Option("max_client_buffer", 1 << 20, "bytes queued for one client before it is closed"
           " with 4008 as too slow", parse_size, metavar="BYTES"),
    Option("ping_interval", 20.0, "WebSocket ping interval (duration)", parse_duration,
           metavar="DURATION"),
    Option("compression", False, "permessage-deflate (off: frames are tiny)", parse_bool,
           metavar="BOOL"),
    Option("drain_seconds", 5.0, "time to close clients on SIGTERM (duration)", parse_duration,
           metavar="DURATION"),
    Option("tls_cert", None, "PEM certificate: serve wss:// directly", metavar="FILE"),
    Option("tls_key", None, "PEM private key for --tls-cert", metavar="FILE"),
    Option("replay_limit", 10000, "events a resume may replay before a resync instead", parse_int,
           metavar="N"),
    Option("memory_events", 10000, "recent events kept in memory to serve resumes", parse_int,
           metavar="N"),
)

_BY_NAME = {o.name: o for o in OPTIONS}


@dataclass(frozen=True)
class Config:
    """Everything the daemon reads from its surroundings, resolved once at start."""

    database_url: str | None = field(default=None, repr=False)  # may hold a password
    host: str = "127.0.0.1"
    port: int = 8765
    secret_key: str | None = field(default=None, repr=False)
    secret_key_fallbacks: tuple[str, ...] = field(default=(), repr=False)
    secret_key_file: str | None = None
    django_settings: str | None = None
    token_max_age: float = 3600.0
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    allow_anonymous: tuple[str, ...] = ()
    legacy_channels: tuple[str, ...] = ()
    legacy_window: float = 1.0
    legacy_burst: int = 3
    retention: float = 86400.0
    log_level: str = "INFO"
    log_format: str = "text"
    metrics_port: int | None = None
    max_frame_size: int = 65536
    max_subscriptions: int = 100
    max_bad_messages: int = 20
    auth_timeout: float = 5.0
    handshake_timeout: float = 10.0
    max_connections_per_ip: int = 0
    trusted_proxies: tuple[Any, ...] = ()
    max_client_buffer: int = 1 << 20
    ping_interval: float = 20.0
    compression: bool = False
    drain_seconds: float = 5.0
    tls_cert: str | None = None
    tls_key: str | None = None
    replay_limit: int = 10000
    memory_events: int = 10000
    # What resolve() found dubious but not fatal (a weak key, an unknown BRIDGE key);
    # `python -m bridge` logs each once at start.
    warnings: tuple[str, ...] = field(default=(), compare=False)

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


def add_arguments(parser: argparse.ArgumentParser, names: Sequence[str] | None = None) -> None:
    """Add the options (all, or the named ones) to a parser; defaults are left to resolve()."""
    for option in OPTIONS:
        if names is not None and option.name not in names:
            continue
        default = option.default
        shown = ", ".join(default) if isinstance(default, tuple) else default
        if option.parse is parse_duration and isinstance(default, float):
            shown = format_duration(default)
        help_text = f"{option.help} [env {option.env_var}"
        help_text += f"; default {shown}]" if shown not in (None, "", ()) else "]"
        if option.is_list:
            parser.add_argument(option.flag, action="append", default=None, help=help_text,
                                metavar=option.metavar)
        else:
            parser.add_argument(option.flag, default=None, help=help_text,
                                metavar=option.metavar)


def resolve(args: argparse.Namespace | Mapping[str, Any] | None = None,
            environ: Mapping[str, str] | None = None) -> Config:
    """Build the Config: flag, then environment variable, then Django settings, then default."""
    flags = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}
    for option in OPTIONS:
        if flags.get(option.name) is not None:
            raw[option.name] = (option.name, "flag " + option.flag, flags[option.name])
        elif environ.get(option.env_var) not in (None, ""):
            raw[option.name] = (option.name, option.env_var, environ[option.env_var])
    warnings: list[str] = []
    if "secret_key_file" in raw:
        raw["secret_key"] = _key_from_file(raw, warnings)
    settings_module = _value(raw, "django_settings")
    django_values = _from_django(settings_module, warnings) if settings_module else {}
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for option in OPTIONS:
        if option.name in raw:
            _, source, value = raw[option.name]
        elif option.name in django_values:
            source, value = django_values[option.name]
        else:
            values[option.name] = option.default
            continue
        sources[option.name] = source
        try:
            values[option.name] = _within_bounds(option.name, option.parse(value))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    if values["secret_key"]:
        warnings += check_secret_key(values["secret_key"], sources["secret_key"])
    for number, key in enumerate(values["secret_key_fallbacks"], 1):
        warnings += check_secret_key(key, f"{sources['secret_key_fallbacks']} (key {number})")
    config = Config(**values, warnings=tuple(warnings))
    _check(config)
    return config


# Secret keys -------------------------------------------------------------------

MIN_KEY_LENGTH = 32
"""Shorter keys are refused: a token is only as hard to forge as its key is to guess."""
STRONG_KEY_LENGTH = 50
STRONG_KEY_UNIQUE = 5
INSECURE_PREFIX = "django-insecure-"
"""Django's own thresholds (security.W009): below them a key is weak, and warned about."""
PUBLIC_KEYS = frozenset({
    # The example project's default key until issue 13: published, so anyone can sign with it.
    "demo-only-insecure-key-pg-notify-bridge-do-not-deploy",
})
NEW_KEY_COMMAND = "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'"


def check_secret_key(key: str, where: str) -> list[str]:
    """Raise ConfigError for a key anyone could sign with; return warnings for a weak one.

    `where` names the setting the key came from (`flag --secret-key`,
    `BRIDGE_SECRET_KEY`, `SECRET_KEY`...), so the message says what to change.
    The Django system check calls this too: both sides apply one rule.
    """
    fix = f"generate a key with {NEW_KEY_COMMAND} and put it in {where}"
    if key in PUBLIC_KEYS:
        raise ConfigError(f"{where} is a key published in the pg-notify-bridge repository:"
                          f" anyone can forge tokens with it; {fix}")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{where} is {len(key)} characters long, too short to keep tokens from"
                          f" being forged: use at least {MIN_KEY_LENGTH}; {fix}")
    weak = []
    if len(key) < STRONG_KEY_LENGTH:
        weak.append(f"{len(key)} characters, fewer than {STRONG_KEY_LENGTH}")
    if len(set(key)) < STRONG_KEY_UNIQUE:
        weak.append(f"{len(set(key))} different characters, fewer than {STRONG_KEY_UNIQUE}")
    if key.startswith(INSECURE_PREFIX):
        weak.append(f"the {INSECURE_PREFIX!r} prefix of a development key")
    if not weak:
        return []
    return [f"{where} is weak ({'; '.join(weak)}), as Django's check security.W009 also says;"
            f" {fix}"]


def _key_from_file(raw: dict[str, Any], warnings: list[str]) -> tuple[str, str, str]:
    """The key of --secret-key-file, as a raw entry naming the file as its source."""
    _, source, path = raw["secret_key_file"]
    if "secret_key" in raw:
        raise ConfigError(f"{source} and {raw['secret_key'][1]} both give the secret key:"
                          " keep only one")
    try:
        with open(path, encoding="utf-8") as handle:
            key = handle.read().rstrip("\r\n")
            mode = os.fstat(handle.fileno()).st_mode
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{source}: cannot read {path}: {reason}; create it with"
                          f" (umask 077; {NEW_KEY_COMMAND} > {path})") from exc
    where = f"the key file {path} ({source})"
    if not key:
        raise ConfigError(f"{where} is empty; fill it with (umask 077; {NEW_KEY_COMMAND} >"
                          f" {path})")
    if mode & 0o004:
        warnings.append(f"{where} is readable by every local user: chmod o-r {path}")
    return ("secret_key", where, key)


_INF = float("inf")
_BOUNDS: dict[str, tuple[float, float]] = {
    "port": (0, 65535),
    "metrics_port": (0, 65535),
    "token_max_age": (1, _INF),
    "max_frame_size": (128, _INF),
    "max_subscriptions": (1, _INF),
    "legacy_burst": (1, _INF),  # 0 would never send an `updated`
    "max_bad_messages": (0, _INF),
    "auth_timeout": (0.001, _INF),
    "handshake_timeout": (0.001, _INF),
    "max_connections_per_ip": (0, _INF),
    "max_client_buffer": (1024, _INF),
}


def _within_bounds(name: str, value: Any) -> Any:
    """The value, if it lies in the option's range (a limit of 0 would lock everyone out)."""
    if name not in _BOUNDS:
        return value
    low, high = _BOUNDS[name]
    if not low <= value <= high:
        wanted = f"at least {low:g}" if high == _INF else f"from {low:g} to {high:g}"
        raise ValueError(f"{value!r} is out of range: use {wanted}")
    return value


def _value(raw: dict[str, Any], name: str) -> Any:
    return raw[name][2] if name in raw else None


def _from_django(module_name: str, warnings: list[str]) -> dict[str, tuple[str, Any]]:
    """SECRET_KEY, SECRET_KEY_FALLBACKS and the BRIDGE dict of a Django settings module.

    The module is imported as a plain module: the daemon does not set Django up,
    it only needs a few values, and signing works with explicit keys. Each value
    comes with the setting it was read from, for error messages. A None in
    BRIDGE means "not set" (the Django side's defaults use it that way).
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import Django settings {module_name!r}: {exc}"
                          + _settings_import_hint(module_name, exc)) from exc
    where = f"Django settings {module_name}"
    values: dict[str, tuple[str, Any]] = {}
    bridge = getattr(module, "BRIDGE", {}) or {}
    errors, doubts = check_bridge_setting(bridge)
    if errors:
        raise ConfigError(f"{where}: {errors[0].message}: {errors[0].hint}")
    warnings += [f"{where}: {doubt.message}: {doubt.hint}" for doubt in doubts]
    for key, value in bridge.items():
        name = str(key).lower()
        if name in _BY_NAME and not _BY_NAME[name].flag_only and value is not None:
            values[name] = (f"{where} BRIDGE[{key!r}]", value)
    if getattr(module, "ALLOWED_HOSTS", None):
        values.setdefault("allowed_hosts", (f"{where} ALLOWED_HOSTS", list(module.ALLOWED_HOSTS)))
    if getattr(module, "SECRET_KEY", None):
        values.setdefault("secret_key", (f"{where} SECRET_KEY", module.SECRET_KEY))
    if getattr(module, "SECRET_KEY_FALLBACKS", None):
        values.setdefault("secret_key_fallbacks", (f"{where} SECRET_KEY_FALLBACKS",
                                                   list(module.SECRET_KEY_FALLBACKS)))
    if "database_url" not in values:
        url = django_database_url(getattr(module, "DATABASES", {}).get("default", {}))
        if url:
            values["database_url"] = (f"{where} DATABASES['default']", url)
    return values


# Django's BRIDGE dict -------------------------------------------------------------

DJANGO_KEYS = ("MODELS", "PORT", "PUBLIC_PORT", "URL", "SECURE", "TOKEN_MAX_AGE",
               "CHANNELS_FOR_USER", "COOKIE", "COOKIE_CHANNELS", "SECRET_KEY",
               "INSTALL_ON_MIGRATE", "METRICS_URLS")
"""The keys django_hooks reads (django_hooks/conf.py DEFAULTS; a test keeps them equal)."""
MODEL_KEYS = ("channel", "channel_column")
"""What one BRIDGE['MODELS'] entry may set."""


@dataclass(frozen=True)
class SettingProblem:
    """Something wrong in the BRIDGE dict: what, and how to fix it."""

    message: str
    hint: str


def bridge_keys() -> tuple[str, ...]:
    """Every key the BRIDGE dict may hold: the Django side's and the daemon's options."""
    daemon = (o.name.upper() for o in OPTIONS if not o.flag_only)
    return tuple(sorted({*DJANGO_KEYS, *daemon}))


def check_bridge_setting(bridge: Any) -> tuple[list[SettingProblem], list[SettingProblem]]:
    """The errors and the warnings of a Django BRIDGE dict.

    An unknown key inside a MODELS entry is an error, not a warning: a misspelt
    `channel_column` leaves the entry without one, and the default grant hook
    then gives every user the whole table. An unknown top-level key only
    configures nothing, so it is a warning naming the closest valid key.
    """
    if not isinstance(bridge, Mapping):
        return [SettingProblem(f"BRIDGE is {type(bridge).__name__}, not a dict",
                               "make BRIDGE a dict, as docs/django.md shows")], []
    errors = _model_problems(bridge.get("MODELS", {}))
    warnings = []
    valid = bridge_keys()
    for key in bridge:
        if key not in valid:
            warnings.append(SettingProblem(f"BRIDGE has an unknown key {key!r}, which nothing"
                                           " reads", _closest(str(key), valid)))
    return errors, warnings


def _model_problems(models: Any) -> list[SettingProblem]:
    shape = ("BRIDGE['MODELS'] maps 'app_label.Model' to a dict of"
             f" {' and '.join(repr(k) for k in MODEL_KEYS)} (or is a list of labels)")
    if models is None:
        return []
    if isinstance(models, (str, bytes)) or not isinstance(models, (Mapping, list, tuple)):
        return [SettingProblem(f"BRIDGE['MODELS'] is {models!r}, not a dict or a list", shape)]
    if not isinstance(models, Mapping):
        return [SettingProblem(f"BRIDGE['MODELS'] lists {label!r}, not an 'app_label.Model'"
                               " string", shape)
                for label in models if not isinstance(label, str)]
    problems = []
    for label, options in models.items():
        entry = f"BRIDGE['MODELS'][{label!r}]"
        if options is None:
            continue
        if not isinstance(options, Mapping):
            problems.append(SettingProblem(f"{entry} is {options!r}, not a dict", shape))
            continue
        for key in options:
            if key not in MODEL_KEYS:
                problems.append(SettingProblem(
                    f"{entry} has an unknown key {key!r}",
                    _closest(str(key), MODEL_KEYS) + "; an entry without its channel_column"
                    " would grant every user the whole table"))
    return problems


def _closest(key: str, valid: Sequence[str]) -> str:
    """`did you mean 'X'?` for the valid name nearest to `key` (any case), else the list."""
    by_fold = {name.casefold(): name for name in valid}
    match = difflib.get_close_matches(key.casefold(), list(by_fold), n=1, cutoff=0.6)
    if match:
        return f"did you mean {by_fold[match[0]]!r}?"
    return "the valid keys are " + ", ".join(repr(name) for name in valid)


def _settings_import_hint(module_name: str, exc: ImportError) -> str:
    """Where Python looked for the settings, and what to set: the usual cause is a
    daemon started outside the project's directory (systemd, cron, another shell)."""
    missing = getattr(exc, "name", None) or ""
    if missing and not (module_name + ".").startswith(missing + "."):
        return f" (the settings import {missing!r}): install it where the bridge runs"
    cwd = os.getcwd()
    searched = (f"the working directory {cwd}"
                if any(os.path.abspath(p or os.curdir) == cwd for p in sys.path)
                else f"not the working directory {cwd}")
    pythonpath = os.environ.get("PYTHONPATH") or "unset"
    return (f" (searched {searched}, PYTHONPATH={pythonpath}): run it from the directory"
            " that holds manage.py, or set PYTHONPATH to that directory (systemd:"
            " WorkingDirectory= and Environment=PYTHONPATH=)")


# DATABASES OPTIONS that Django's backend consumes itself; the rest are libpq's (sslmode...).
_NOT_LIBPQ = frozenset({"pool", "server_side_binding", "isolation_level", "assume_role",
                        "cursor_factory", "context", "prepare_threshold"})


def django_database_url(db: Mapping[str, Any]) -> str | None:
    """A libpq conninfo string for a Django DATABASES entry (with its libpq OPTIONS, so
    sslmode and friends survive), or None when it is not PostgreSQL."""
    if "postgresql" not in str(db.get("ENGINE", "")):
        return None
    from psycopg.conninfo import make_conninfo

    parts: dict[str, Any] = {"dbname": db.get("NAME"), "user": db.get("USER"),
                             "password": db.get("PASSWORD"), "host": db.get("HOST"),
                             "port": db.get("PORT")}
    for key, value in (db.get("OPTIONS") or {}).items():
        if key not in _NOT_LIBPQ and isinstance(value, (str, int)) and not isinstance(value, bool):
            parts[key] = value
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v not in (None, "")})


def _check(config: Config) -> None:
    if config.log_format not in ("text", "json"):
        raise ConfigError(f"--log-format {config.log_format!r}: use text or json")
    if config.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"--log-level {config.log_level!r}: use DEBUG, INFO, WARNING or ERROR")
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together: give both or neither")

    from . import channels

    for name in (*config.allow_anonymous, *config.legacy_channels):
        if not channels.is_valid(name):
            raise ConfigError(f"channel {name!r} is not a valid channel name")


def require(config: Config, *names: str) -> None:
    """Raise a ConfigError naming the flag and variable of each missing required option."""
    for name in names:
        if getattr(config, name) in (None, ""):
            option = _BY_NAME[name]
            raise ConfigError(
                f"{option.flag} is required: pass it or set {option.env_var}"
                + (" (or use --django-settings)" if name in ("secret_key", "database_url")
                   else "")
            )
