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
import importlib
import ipaddress
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    flag_only: bool = False
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
    Option("secret_key", None, "Django SECRET_KEY that signs tokens", env="BRIDGE_SECRET_KEY",
           metavar="KEY"),
    Option("secret_key_fallbacks", (), "old keys still accepted during a key rotation",
           parse_list, is_list=True, metavar="KEY"),
    Option("django_settings", None, "read SECRET_KEY, SECRET_KEY_FALLBACKS and the BRIDGE dict"
           " from this Django settings module", metavar="MODULE"),
    Option("token_max_age", 3600.0, "oldest token accepted (duration)", parse_duration,
           metavar="DURATION"),
    Option("allowed_origins", (), "browser origins allowed to connect (default: the host the"
           " client connected to, any port; * allows all)", parse_list, is_list=True,
           metavar="ORIGIN"),
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
    django_settings: str | None = None
    token_max_age: float = 3600.0
    allowed_origins: tuple[str, ...] = ()
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
    settings_module = _value(raw, "django_settings")
    django_values = _from_django(settings_module) if settings_module else {}
    values: dict[str, Any] = {}
    for option in OPTIONS:
        if option.name in raw:
            _, source, value = raw[option.name]
        elif option.name in django_values:
            source, value = django_values[option.name]
        else:
            values[option.name] = option.default
            continue
        try:
            values[option.name] = _within_bounds(option.name, option.parse(value))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc
    config = Config(**values)
    _check(config)
    return config


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


def _from_django(module_name: str) -> dict[str, tuple[str, Any]]:
    """SECRET_KEY, SECRET_KEY_FALLBACKS and the BRIDGE dict of a Django settings module.

    The module is imported as a plain module: the daemon does not set Django up,
    it only needs a few values, and signing works with explicit keys. Each value
    comes with the setting it was read from, for error messages. A None in
    BRIDGE means "not set" (the Django side's defaults use it that way).
    """
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"cannot import Django settings {module_name!r}: {exc}") from exc
    where = f"Django settings {module_name}"
    values: dict[str, tuple[str, Any]] = {}
    bridge = getattr(module, "BRIDGE", {}) or {}
    for key, value in bridge.items():
        name = str(key).lower()
        if name in _BY_NAME and value is not None:
            values[name] = (f"{where} BRIDGE[{key!r}]", value)
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
