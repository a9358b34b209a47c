"""bridge/config.py alone: flag beats variable beats Django settings beats default."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge import config as cfg
from bridge.__main__ import build_parser
from bridge.config import Config, ConfigError, resolve


def _key(name: str) -> str:
    """A key long and varied enough for the daemon's key rule, recognisable by `name`."""
    return f"{name}-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEFGHIJKLMN"


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
    module = settings_module(f"SECRET_KEY = {_key('from-django')!r}\n"
                             "BRIDGE = {'TOKEN_MAX_AGE': '30m', 'PORT': 9000,"
                             " 'LEGACY_WINDOW': 3}\n")
    env = {"BRIDGE_TOKEN_MAX_AGE": "10m", "BRIDGE_PORT": "9001"}
    config = resolve(_flags("--django-settings", module, "--token-max-age", "5m"), env)
    assert config.token_max_age == 300.0  # flag
    assert config.port == 9001  # variable over Django
    assert config.legacy_window == 3.0  # Django over default
    assert config.retention == 86400.0  # default
    assert config.secret_key == _key("from-django")
    assert resolve(_flags("--django-settings", module), {}).token_max_age == 1800.0


def test_django_settings_module_from_the_environment(
    settings_module: Callable[[str], str]
) -> None:
    """BRIDGE_DJANGO_SETTINGS works like the flag; BRIDGE_SECRET_KEY beats its SECRET_KEY."""
    module = settings_module(f"SECRET_KEY = {_key('from-django')!r}\n"
                             f"SECRET_KEY_FALLBACKS = [{_key('old-1')!r}, {_key('old-2')!r}]\n")
    config = resolve(_flags(), {"BRIDGE_DJANGO_SETTINGS": module})
    assert config.secret_key == _key("from-django")
    assert config.secret_key_fallbacks == (_key("old-1"), _key("old-2"))
    env = {"BRIDGE_DJANGO_SETTINGS": module, "BRIDGE_SECRET_KEY": _key("from-env")}
    assert resolve(_flags(), env).secret_key == _key("from-env")
    assert resolve(_flags("--secret-key", _key("flag")), env).secret_key == _key("flag")


def test_bridge_dict_secret_key_beats_settings_secret_key(
    settings_module: Callable[[str], str]
) -> None:
    """BRIDGE['SECRET_KEY'] signs on the Django side, so the daemon reads it first too."""
    module = settings_module(f"SECRET_KEY = {_key('site')!r}\n"
                             f"BRIDGE = {{'SECRET_KEY': {_key('bridge-only')!r}}}\n")
    assert resolve(_flags("--django-settings", module), {}).secret_key == _key("bridge-only")


def test_none_in_bridge_dict_means_unset(settings_module: Callable[[str], str]) -> None:
    """BRIDGE = {'SECRET_KEY': None, 'PORT': None} leaves SECRET_KEY and the default port."""
    module = settings_module(f"SECRET_KEY = {_key('site')!r}\n"
                             "BRIDGE = {'SECRET_KEY': None, 'PORT': None, 'URL': None}\n")
    config = resolve(_flags("--django-settings", module), {})
    assert config.secret_key == _key("site")  # not the string "None"
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
           "BRIDGE_SECRET_KEY_FALLBACKS": f"{_key('old1')},{_key('old2')}"}
    config = resolve(_flags(), env)
    assert config.allowed_origins == ("https://a.example", "https://b.example")
    assert config.secret_key_fallbacks == (_key("old1"), _key("old2"))


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
    config = resolve(_flags("--secret-key", _key("s3cr3t"), "--secret-key-fallbacks",
                            _key("0ld")), {})
    assert "s3cr3t" not in repr(config) and "0ld" not in repr(config)


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


# -- secret keys (issue 13 item 6) ---------------------------------------------------------


@pytest.mark.parametrize(("args", "environ", "where"), [
    (("--secret-key", "x"), {}, "flag --secret-key is 1 characters long"),
    ((), {"BRIDGE_SECRET_KEY": "k" * 31}, "BRIDGE_SECRET_KEY is 31 characters long"),
])
def test_a_short_secret_key_is_refused(args: tuple[str, ...], environ: dict[str, str],
                                       where: str) -> None:
    """A key under 32 characters is a ConfigError naming its setting and how to make a key."""
    message = _error(_flags(*args), environ)
    assert message.startswith(where + ", too short to keep tokens from being forged: use at"
                              " least 32; generate a key with python3 -c 'import secrets;"
                              " print(secrets.token_urlsafe(50))'")


def test_the_published_example_key_is_refused(settings_module: Callable[[str], str]) -> None:
    """The example project's old in-repository key is refused wherever it comes from."""
    public = "demo-only-insecure-key-pg-notify-bridge-do-not-deploy"
    module = settings_module(f"SECRET_KEY = {public!r}\n")
    message = _error(_flags("--django-settings", module))
    assert message.startswith(f"Django settings {module} SECRET_KEY is a key published in the"
                              " pg-notify-bridge repository: anyone can forge tokens with it")
    assert "published" in _error(_flags("--secret-key", public))


@pytest.mark.parametrize(("key", "weakness"), [
    ("k0123456789abcdefghijklmnopqrstuvwxyz", "37 characters, fewer than 50"),
    ("abab" * 13, "2 different characters, fewer than 5"),
    ("django-insecure-" + "0123456789abcdefghijklmnopqrstuvwxyz",
     "the 'django-insecure-' prefix of a development key"),
])
def test_a_weak_secret_key_is_a_warning(key: str, weakness: str) -> None:
    """Keys of 32 characters or more that Django's W009 calls weak start, with a warning."""
    config = resolve(_flags(), {"BRIDGE_SECRET_KEY": key})
    assert config.secret_key == key
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"BRIDGE_SECRET_KEY is weak ({weakness})")
    assert "security.W009" in config.warnings[0]


def test_a_strong_secret_key_has_no_warning() -> None:
    """A random key of Django's length starts without a word."""
    assert resolve(_flags(), {"BRIDGE_SECRET_KEY": _key("strong")}).warnings == ()


def test_fallback_keys_follow_the_same_rule(settings_module: Callable[[str], str]) -> None:
    """A short old key would verify forged tokens just as well: it is refused too."""
    message = _error(_flags("--secret-key", _key("new"), "--secret-key-fallbacks",
                            f"{_key('old')},short"))
    assert message.startswith("flag --secret-key-fallbacks (key 2) is 5 characters long")
    module = settings_module(f"SECRET_KEY = {_key('new')!r}\nSECRET_KEY_FALLBACKS = ['x']\n")
    assert _error(_flags("--django-settings", module)).startswith(
        f"Django settings {module} SECRET_KEY_FALLBACKS (key 1) is 1 characters long")


def test_secret_key_file_is_read_without_its_newline(tmp_path: Path) -> None:
    """--secret-key-file (or BRIDGE_SECRET_KEY_FILE) reads the key; it beats Django's."""
    key_file = tmp_path / "key"
    key_file.write_text(_key("file") + "\n")
    key_file.chmod(0o600)
    config = resolve(_flags("--secret-key-file", str(key_file)), {})
    assert config.secret_key == _key("file") and config.warnings == ()
    assert resolve(_flags(), {"BRIDGE_SECRET_KEY_FILE": str(key_file)}).secret_key == _key("file")


def test_secret_key_file_errors_say_what_to_do(tmp_path: Path) -> None:
    """A missing, empty or short key file, or a file and a key together, are clear errors."""
    missing = tmp_path / "missing"
    assert _error(_flags("--secret-key-file", str(missing))) == (
        f"flag --secret-key-file: cannot read {missing}: No such file or directory; create it"
        f" with (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(50))' >"
        f" {missing})")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    assert _error(_flags("--secret-key-file", str(empty))).startswith(
        f"the key file {empty} (flag --secret-key-file) is empty; fill it with")
    short = tmp_path / "short"
    short.write_text("too-short\n")
    assert _error(_flags(), {"BRIDGE_SECRET_KEY_FILE": str(short)}).startswith(
        f"the key file {short} (BRIDGE_SECRET_KEY_FILE) is 9 characters long")
    assert _error(_flags("--secret-key-file", str(short)),
                  {"BRIDGE_SECRET_KEY": _key("env")}) == (
        "flag --secret-key-file and BRIDGE_SECRET_KEY both give the secret key: keep only one")


def test_a_key_file_every_user_can_read_is_a_warning(tmp_path: Path) -> None:
    """A world-readable key file works, with a warning saying to chmod it."""
    key_file = tmp_path / "key"
    key_file.write_text(_key("file"))
    key_file.chmod(0o644)
    config = resolve(_flags("--secret-key-file", str(key_file)), {})
    assert config.warnings == (f"the key file {key_file} (flag --secret-key-file) is readable"
                               f" by every local user: chmod o-r {key_file}",)


def test_cli_refuses_a_short_key_and_warns_about_one_on_the_command_line(
        tmp_path: Path) -> None:
    """`python -m bridge --secret-key x` exits 2; a good key on the command line is warned
    about (visible in /proc/PID/cmdline), the same key in BRIDGE_SECRET_KEY is not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BRIDGE_", "DJANGO_"))}
    base = [sys.executable, "-m", "bridge"]
    refused = subprocess.run([*base, "serve", "--secret-key", "x", "--database-url",
                              "dbname=none"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: flag --secret-key is 1 characters long")
    token = [*base, "token", "--user", "1", "--channel", "a"]
    flagged = subprocess.run([*token, "--secret-key", _key("k")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert flagged.returncode == 0, flagged.stderr
    assert "a secret key is on the command line, where /proc/<pid>/cmdline shows it to every" \
           " local user: set BRIDGE_SECRET_KEY (BRIDGE_SECRET_KEY_FALLBACKS) or use" \
           " --secret-key-file instead" in flagged.stderr
    quiet = subprocess.run(token, env={**env, "BRIDGE_SECRET_KEY": _key("k")},
                           capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and quiet.stderr == ""


# -- the BRIDGE dict (issue 13 item 10) ----------------------------------------------------


def test_unknown_key_in_a_models_entry_stops_the_daemon(
        settings_module: Callable[[str], str]) -> None:
    """`chanel_column` (one letter off) would grant every user the whole table: refused."""
    module = settings_module(f"SECRET_KEY = {_key('k')!r}\n"
                             "BRIDGE = {'MODELS': {'orders.Order':"
                             " {'chanel_column': 'customer'}}}\n")
    assert _error(_flags("--django-settings", module)) == (
        f"Django settings {module}: BRIDGE['MODELS']['orders.Order'] has an unknown key"
        " 'chanel_column': did you mean 'channel_column'?; an entry without its channel_column"
        " would grant every user the whole table")


@pytest.mark.parametrize(("models", "message"), [
    ("'example.Task'", "BRIDGE['MODELS'] is 'example.Task', not a dict or a list"),
    ("{'example.Task': 'owner_id'}", "BRIDGE['MODELS']['example.Task'] is 'owner_id', not a dict"),
    ("[3]", "BRIDGE['MODELS'] lists 3, not an 'app_label.Model' string"),
])
def test_models_of_the_wrong_shape_stop_the_daemon(
        settings_module: Callable[[str], str], models: str, message: str) -> None:
    """MODELS that is a string, or an entry that is not a dict, is refused with its shape."""
    module = settings_module(f"SECRET_KEY = {_key('k')!r}\nBRIDGE = {{'MODELS': {models}}}\n")
    assert _error(_flags("--django-settings", module)).startswith(
        f"Django settings {module}: {message}: BRIDGE['MODELS'] maps 'app_label.Model' to a dict"
        " of 'channel' and 'channel_column' (or is a list of labels)")


def test_unknown_top_level_bridge_key_is_a_warning_with_the_closest_name(
        settings_module: Callable[[str], str]) -> None:
    """A misspelt top-level key configures nothing: the daemon starts and names the fix."""
    module = settings_module(f"SECRET_KEY = {_key('k')!r}\n"
                             "BRIDGE = {'TOKEN_MAXAGE': 60, 'port': 9000, 'ZZZ': 1}\n")
    config = resolve(_flags("--django-settings", module), {})
    where = f"Django settings {module}: BRIDGE has an unknown key"
    assert config.warnings[:2] == (
        f"{where} 'TOKEN_MAXAGE', which nothing reads: did you mean 'TOKEN_MAX_AGE'?",
        f"{where} 'port', which nothing reads: did you mean 'PORT'?")
    assert config.warnings[2].startswith(f"{where} 'ZZZ', which nothing reads: the valid keys"
                                         " are 'ALLOWED_HOSTS', 'ALLOWED_ORIGINS', ")
    assert config.token_max_age == 3600.0


def test_every_documented_bridge_key_is_known() -> None:
    """Each daemon option (but the file-only ones) and each Django-side key is a valid key."""
    keys = cfg.bridge_keys()
    assert "SECRET_KEY_FILE" not in keys
    assert {"MODELS", "COOKIE", "PORT", "TOKEN_MAX_AGE", "MAX_CLIENT_BUFFER"} <= set(keys)

# -- allowed hosts ---------------------------------------------------------------------------


def test_allowed_hosts_from_flag_and_variable() -> None:
    """--allowed-hosts and BRIDGE_ALLOWED_HOSTS take names, .domains, IPs (IPv6 bracketed), *."""
    config = resolve(_flags("--allowed-hosts", "App.Example.org.,.example.net",
                            "--allowed-hosts", "::1,10.0.0.5"), {})
    assert config.allowed_hosts == ("app.example.org", ".example.net", "[::1]", "10.0.0.5")
    assert resolve(_flags(), {"BRIDGE_ALLOWED_HOSTS": "*"}).allowed_hosts == ("*",)
    assert resolve(_flags(), {}).allowed_hosts == ()  # the daemon derives the default


@pytest.mark.parametrize(("value", "fix"), [
    ("https://app.example.org/", "give only its host name, like app.example.org"),
    ("app.example.org:8765", "give the host name alone (any port matches)"),
    ("app example", "use example.org, .example.org, an IP address or *"),
    ("-app.example", "use example.org, .example.org, an IP address or *"),
])
def test_bad_allowed_hosts_name_the_fix(value: str, fix: str) -> None:
    """A URL, a port or a non-name is refused with the flag, the variable and what to write."""
    assert fix in _error(_flags(f"--allowed-hosts={value}"))
    assert "flag --allowed-hosts" in _error(_flags(f"--allowed-hosts={value}"))
    assert "BRIDGE_ALLOWED_HOSTS" in _error(None, {"BRIDGE_ALLOWED_HOSTS": value})


def test_allowed_hosts_from_django(settings_module: Callable[[str], str]) -> None:
    """With --django-settings: BRIDGE['ALLOWED_HOSTS'], else Django's own ALLOWED_HOSTS."""
    both = settings_module("ALLOWED_HOSTS = ['site.example', '.site.example']\n"
                           "BRIDGE = {'ALLOWED_HOSTS': ['bridge.example']}\n")
    assert resolve(_flags("--django-settings", both), {}).allowed_hosts == ("bridge.example",)
    django_only = settings_module("ALLOWED_HOSTS = ['site.example', '.site.example']\n")
    assert resolve(_flags("--django-settings", django_only), {}).allowed_hosts == (
        "site.example", ".site.example")
    empty = settings_module("ALLOWED_HOSTS = []\n")
    assert resolve(_flags("--django-settings", empty), {}).allowed_hosts == ()
    assert resolve(_flags("--django-settings", django_only, "--allowed-hosts", "x.example"),
                   {}).allowed_hosts == ("x.example",)
    bad = settings_module("ALLOWED_HOSTS = ['site.example:8000']\n")
    message = _error(_flags("--django-settings", bad))
    assert "ALLOWED_HOSTS" in message and "any port matches" in message
