"""bridge/config.py alone: flag beats variable beats Django settings beats default."""

from __future__ import annotations

import argparse
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import config as cfg
from bridge.__main__ import build_parser
from bridge.config import Config, ConfigError, resolve


def _flags(*argv: str) -> argparse.Namespace:
    """Parse `python -m bridge serve ARGV` exactly as the daemon does."""
    return build_parser().parse_args(["serve", *argv])


def _error(args: Any = None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        resolve(args, environ or {})
    return str(info.value)


@pytest.fixture
def settings_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                    ) -> Iterator[Callable[[str], str]]:
    """Write a Django settings module on sys.path; returns its dotted name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    names: list[str] = []

    def write(body: str) -> str:
        name = f"bridge_test_settings_{uuid.uuid4().hex[:8]}"
        (tmp_path / f"{name}.py").write_text(body)
        names.append(name)
        return name

    yield write
    for name in names:
        sys.modules.pop(name, None)


# -- precedence ----------------------------------------------------------------------------


def test_defaults_without_anything() -> None:
    """With no flag, variable or settings module, every option has its documented default."""
    config = resolve(_flags(), {})
    assert config == Config()
    assert config.host == "127.0.0.1"  # binding beyond loopback is explicit
    assert (config.port, config.token_max_age, config.legacy_window, config.retention) == (
        8765, 3600.0, 1.0, 86400.0)
    assert config.max_connections_per_ip == 0  # off: behind nginx everyone shares one address
    assert (config.max_frame_size, config.max_subscriptions, config.max_bad_messages) == (
        65536, 100, 20)
    assert (config.auth_timeout, config.handshake_timeout, config.max_client_buffer) == (
        5.0, 10.0, 1 << 20)


def test_flag_beats_variable_beats_django_beats_default(
    settings_module: Callable[[str], str]
) -> None:
    """The same option from four places: the first present in that order wins."""
    module = settings_module("SECRET_KEY = 'from-django'\n"
                             "BRIDGE = {'TOKEN_MAX_AGE': '30m', 'PORT': 9000,"
                             " 'LEGACY_WINDOW': 3}\n")
    env = {"BRIDGE_TOKEN_MAX_AGE": "10m", "BRIDGE_PORT": "9001"}
    config = resolve(_flags("--django-settings", module, "--token-max-age", "5m"), env)
    assert config.token_max_age == 300.0  # flag
    assert config.port == 9001  # variable over Django
    assert config.legacy_window == 3.0  # Django over default
    assert config.retention == 86400.0  # default
    assert config.secret_key == "from-django"
    assert resolve(_flags("--django-settings", module), {}).token_max_age == 1800.0


def test_django_settings_module_from_the_environment(
    settings_module: Callable[[str], str]
) -> None:
    """BRIDGE_DJANGO_SETTINGS works like the flag; BRIDGE_SECRET_KEY beats its SECRET_KEY."""
    module = settings_module("SECRET_KEY = 'from-django'\n"
                             "SECRET_KEY_FALLBACKS = ['old-1', 'old-2']\n")
    config = resolve(_flags(), {"BRIDGE_DJANGO_SETTINGS": module})
    assert config.secret_key == "from-django"
    assert config.secret_key_fallbacks == ("old-1", "old-2")
    env = {"BRIDGE_DJANGO_SETTINGS": module, "BRIDGE_SECRET_KEY": "from-env"}
    assert resolve(_flags(), env).secret_key == "from-env"
    assert resolve(_flags("--secret-key", "from-flag"), env).secret_key == "from-flag"


def test_bridge_dict_secret_key_beats_settings_secret_key(
    settings_module: Callable[[str], str]
) -> None:
    """BRIDGE['SECRET_KEY'] signs on the Django side, so the daemon reads it first too."""
    module = settings_module("SECRET_KEY = 'site'\nBRIDGE = {'SECRET_KEY': 'bridge-only'}\n")
    assert resolve(_flags("--django-settings", module), {}).secret_key == "bridge-only"


def test_none_in_bridge_dict_means_unset(settings_module: Callable[[str], str]) -> None:
    """BRIDGE = {'SECRET_KEY': None, 'PORT': None} leaves SECRET_KEY and the default port."""
    module = settings_module("SECRET_KEY = 'site'\n"
                             "BRIDGE = {'SECRET_KEY': None, 'PORT': None, 'URL': None}\n")
    config = resolve(_flags("--django-settings", module), {})
    assert config.secret_key == "site"  # not the string "None"
    assert config.port == 8765


def test_django_database_becomes_the_database_url(settings_module: Callable[[str], str]) -> None:
    """A PostgreSQL DATABASES['default'] gives the libpq URL; DATABASE_URL beats it."""
    module = settings_module(
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql',"
        " 'NAME': 'app', 'USER': 'web', 'HOST': 'db.internal', 'PORT': 5433}}\n")
    url = resolve(_flags("--django-settings", module), {}).database_url
    assert url is not None
    assert "dbname=app" in url and "host=db.internal" in url and "port=5433" in url
    env = {"DATABASE_URL": "postgresql:///other"}
    assert resolve(_flags("--django-settings", module), env).database_url == env["DATABASE_URL"]


def test_missing_settings_module_is_a_config_error() -> None:
    """--django-settings naming no importable module says which one."""
    assert "no_such_settings_module" in _error(
        _flags("--django-settings", "no_such_settings_module"))


# -- value syntax --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("30s", 30.0), ("5m", 300.0), ("24h", 86400.0), ("2d", 172800.0),
     ("90", 90.0), ("1.5", 1.5), (" 10s ", 10.0), (7, 7.0), (0.25, 0.25)],
)
def test_durations(text: str | float, seconds: float) -> None:
    """500ms, 30s, 5m, 24h, 2d or plain seconds."""
    assert cfg.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5 minutes", "-1s", "1h30m", "s", "1e3", "10 sec"])
def test_bad_durations(text: str) -> None:
    """Anything else is refused with the accepted forms in the message."""
    with pytest.raises(ValueError, match="500ms, 30s, 5m, 24h"):
        cfg.parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("65536", 65536), ("64KiB", 65536), ("64k", 65536), ("1MiB", 1 << 20), ("2mb", 2 << 20),
     (4096, 4096)],
)
def test_sizes(text: str | int, size: int) -> None:
    """Byte sizes: plain, KiB or MiB."""
    assert cfg.parse_size(text) == size


def test_list_flags_take_commas_and_repeats() -> None:
    """`--allow-anonymous a,b --allow-anonymous c` is (a, b, c); variables take commas."""
    config = resolve(_flags("--allow-anonymous", "news,example_task",
                            "--allow-anonymous", "alerts"), {})
    assert config.allow_anonymous == ("news", "example_task", "alerts")
    env = {"BRIDGE_ALLOWED_ORIGINS": "https://a.example, https://b.example,,",
           "BRIDGE_SECRET_KEY_FALLBACKS": "old1,old2"}
    config = resolve(_flags(), env)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.secret_key_fallbacks == ("old1", "old2")


def test_list_flag_beats_list_variable() -> None:
    """A list flag replaces its variable's list; it does not add to it."""
    env = {"BRIDGE_ALLOW_ANONYMOUS": "news"}
    assert resolve(_flags("--allow-anonymous", "alerts"), env).allow_anonymous == ("alerts",)


def test_django_lists_take_a_list_or_commas(settings_module: Callable[[str], str]) -> None:
    """BRIDGE['ALLOWED_ORIGINS'] may be a list or a comma string."""
    module = settings_module("BRIDGE = {'ALLOWED_ORIGINS': ['https://a.example'],"
                             " 'ALLOW_ANONYMOUS': 'news,alerts'}\n")
    config = resolve(_flags("--django-settings", module), {})
    assert config.allowed_origins == ("https://a.example",)
    assert config.allow_anonymous == ("news", "alerts")


def test_trusted_proxies_are_networks() -> None:
    """--trusted-proxies takes addresses and CIDR blocks."""
    config = resolve(_flags("--trusted-proxies", "10.0.0.0/8,127.0.0.1"), {})
    assert [str(n) for n in config.trusted_proxies] == ["10.0.0.0/8", "127.0.0.1/32"]


@pytest.mark.parametrize(("text", "value"), [("true", True), ("ON", True), ("0", False),
                                             ("no", False)])
def test_booleans(text: str, value: bool) -> None:
    """Boolean flags and variables take true/false, yes/no, on/off, 1/0."""
    assert resolve(_flags(), {"BRIDGE_COMPRESSION": text}).compression is value


# -- errors name their source --------------------------------------------------------------


def test_bad_flag_value_names_the_flag() -> None:
    """A bad value from a flag names the flag."""
    message = _error(_flags("--token-max-age", "forever"))
    assert message.startswith("flag --token-max-age:") and "'forever'" in message


def test_bad_variable_value_names_the_variable() -> None:
    """A bad value from the environment names the variable."""
    assert _error(_flags(), {"BRIDGE_MAX_SUBSCRIPTIONS": "lots"}).startswith(
        "BRIDGE_MAX_SUBSCRIPTIONS: 'lots' is not a whole number")


def test_bad_django_value_names_the_setting(settings_module: Callable[[str], str]) -> None:
    """A bad value from Django names the module and the BRIDGE key."""
    module = settings_module("BRIDGE = {'MAX_FRAME_SIZE': 'huge'}\n")
    message = _error(_flags("--django-settings", module))
    assert f"Django settings {module} BRIDGE['MAX_FRAME_SIZE']" in message


@pytest.mark.parametrize(
    ("argv", "env", "names"),
    [
        (("--max-subscriptions", "0"), {}, "flag --max-subscriptions"),
        ((), {"BRIDGE_PORT": "70000"}, "BRIDGE_PORT"),
        (("--auth-timeout", "0s"), {}, "flag --auth-timeout"),
        (("--max-client-buffer", "10"), {}, "flag --max-client-buffer"),
        (("--max-frame-size", "0"), {}, "flag --max-frame-size"),
        (("--legacy-burst", "0"), {}, "flag --legacy-burst"),
    ],
)
def test_limits_out_of_range_are_refused(argv: tuple[str, ...], env: dict[str, str],
                                         names: str) -> None:
    """A limit that would lock everyone out (0 subscriptions, 0s to authenticate) is refused."""
    message = _error(_flags(*argv), env)
    assert message.startswith(names) and "out of range" in message


def test_legacy_burst_from_flag_variable_and_django(
    settings_module: Callable[[str], str]
) -> None:
    """--legacy-burst, BRIDGE_LEGACY_BURST and BRIDGE['LEGACY_BURST'] set it; 0 is refused."""
    module = settings_module("BRIDGE = {'LEGACY_BURST': 5}\n")
    assert resolve(_flags(), {}).legacy_burst == 3
    assert resolve(_flags("--django-settings", module), {}).legacy_burst == 5
    env = {"BRIDGE_LEGACY_BURST": "2"}
    assert resolve(_flags("--django-settings", module), env).legacy_burst == 2
    assert resolve(_flags("--legacy-burst", "1"), env).legacy_burst == 1
    assert _error(_flags(), {"BRIDGE_LEGACY_BURST": "0"}) == (
        "BRIDGE_LEGACY_BURST: 0 is out of range: use at least 1")
    bad = settings_module("BRIDGE = {'LEGACY_BURST': 'many'}\n")
    assert "BRIDGE['LEGACY_BURST']: 'many' is not a whole number" in _error(
        _flags("--django-settings", bad))


def test_required_option_names_flag_and_variable() -> None:
    """A missing database URL names --database-url and DATABASE_URL."""
    with pytest.raises(ConfigError, match="--database-url is required: pass it or set"
                                          " DATABASE_URL"):
        cfg.require(resolve(_flags(), {}), "database_url")


def test_tls_cert_and_key_go_together() -> None:
    """--tls-cert without --tls-key (or the reverse) is refused at start, not at handshake."""
    assert "--tls-key" in _error(_flags("--tls-cert", "cert.pem"))
    assert "--tls-cert" in _error(_flags(), {"BRIDGE_TLS_KEY": "key.pem"})


def test_invalid_anonymous_channel_is_refused() -> None:
    """--allow-anonymous with a name outside the channel grammar is refused by name."""
    assert "'Bad Name'" in _error(_flags("--allow-anonymous", "Bad Name"))


def test_secrets_stay_out_of_repr() -> None:
    """Printing or logging the Config never shows the secret key or its fallbacks."""
    config = resolve(_flags("--secret-key", "s3cr3t-key", "--secret-key-fallbacks", "0ld-key"),
                     {})
    assert "s3cr3t-key" not in repr(config) and "0ld-key" not in repr(config)


def test_every_option_has_a_flag_and_a_variable_in_help(
    capsys: pytest.CaptureFixture[str]
) -> None:
    """`serve --help` lists each option's flag and environment variable."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    flat = " ".join(capsys.readouterr().out.split())
    for option in cfg.OPTIONS:
        assert option.flag in flat, option.flag
        assert f"env {option.env_var}" in flat, option.env_var


def test_help_shows_durations_as_written_in_the_contract(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--help shows 1h, 1s and 24h, the way docs/protocol.md and users write them."""
    from bridge.__main__ import main

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "BRIDGE_TOKEN_MAX_AGE; default 1h]" in text
    assert "BRIDGE_LEGACY_WINDOW; default 1s]" in text
    assert "BRIDGE_RETENTION; default 24h]" in text
    assert "--legacy-burst N" in text and "BRIDGE_LEGACY_BURST; default 3]" in text


def test_django_database_options_reach_the_daemon() -> None:
    """sslmode and other libpq OPTIONS of a Django DATABASES entry survive into the URL."""
    from psycopg.conninfo import conninfo_to_dict

    from bridge.config import django_database_url

    url = django_database_url({"ENGINE": "django.db.backends.postgresql", "NAME": "app",
                               "USER": "u", "HOST": "db.example",
                               "OPTIONS": {"sslmode": "verify-full", "pool": True,
                                           "sslrootcert": "/etc/ca.pem"}})
    assert url is not None
    assert conninfo_to_dict(url) == {"dbname": "app", "user": "u", "host": "db.example",
                                     "sslmode": "verify-full", "sslrootcert": "/etc/ca.pem"}
    assert django_database_url({"ENGINE": "django.db.backends.sqlite3"}) is None
