"""bridge/auth.py alone: tokens exactly as docs/protocol.md mints them, grants, origins, cookies."""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import time
import zlib
from typing import Any

import pytest
from django.core import signing
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.auth import (
    SALT,
    Grant,
    TokenError,
    Verifier,
    client_address,
    cookie_token,
    default_hosts,
    host_allowed,
    legacy_channels,
    origin_allowed,
)
from tests.fix_bridge import SECRET, token
from tests.timing import scaled

OLD = "the-old-secret-key-of-a-rotation-0123456789abcdef"

_DUMPS = """
import json, sys
from django.conf import settings
settings.configure(SECRET_KEY=sys.argv[1], SECRET_KEY_FALLBACKS=[sys.argv[2]])
from django.core import signing
out = {}
for name, spec in json.loads(sys.stdin.read()).items():
    kwargs = {k: spec[k] for k in ("key", "salt") if spec.get(k) is not None}
    out[name] = signing.dumps(spec["payload"], compress=spec.get("compress", False), **kwargs)
print(json.dumps(out))
"""


def django_dumps(specs: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Tokens made by django.core.signing.dumps itself, in a child process configured as a
    Django project is (SECRET_KEY=SECRET, SECRET_KEY_FALLBACKS=[OLD]); each spec gives
    `payload` and optionally `key`, `salt` (None: Django's default salt) and `compress`."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    out = subprocess.run([sys.executable, "-c", _DUMPS, SECRET, OLD], env=env, check=True,
                         input=json.dumps(specs), capture_output=True, text=True,
                         timeout=scaled(60))
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def django_tokens() -> dict[str, str]:
    """Bridge tokens as Django mints them: from settings, explicit key, compressed, etc."""
    payload = {"u": 42, "ch": ["example_task:owner_id=42", "news"]}
    now = int(time.time())
    return django_dumps({
        "settings_key": {"payload": payload, "salt": SALT},
        "explicit_old_key": {"payload": payload, "key": OLD, "salt": SALT},
        "compressed": {"payload": {**payload, "pad": "x" * 500}, "salt": SALT,
                       "compress": True},
        "default_salt": {"payload": payload},
        "expired_exp": {"payload": {**payload, "exp": now - 10}, "salt": SALT},
        "future_exp": {"payload": {**payload, "exp": now + 3600}, "salt": SALT},
    })


def _refused(verifier: Verifier, tok: object) -> str:
    """The reason a token is refused; the reason never contains the token."""
    with pytest.raises(TokenError) as info:
        verifier.verify(tok)
    reason = str(info.value)
    if isinstance(tok, str) and len(tok) > 8:
        assert tok not in reason
    return reason


class _Backdated(signing.TimestampSigner):
    """A signer whose clock is `age` seconds behind: mints tokens that are already old."""

    def __init__(self, age: float, **kwargs: Any):
        super().__init__(**kwargs)
        self.age = age

    def timestamp(self) -> str:
        return signing.b62_encode(int(time.time() - self.age))


def _signer(key: str = SECRET, salt: str = SALT) -> signing.TimestampSigner:
    return signing.TimestampSigner(key=key, salt=salt, fallback_keys=[])


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).strip(b"=").decode()


# -- tokens as Django makes them -----------------------------------------------------------


def test_token_from_django_settings_is_accepted(django_tokens: dict[str, str]) -> None:
    """signing.dumps(payload, salt=SALT) with SECRET_KEY from settings verifies with that key."""
    grant = Verifier(SECRET).verify(django_tokens["settings_key"])
    assert grant == Grant("42", frozenset({"example_task:owner_id=42", "news"}))


def test_compressed_token_from_django_is_accepted(django_tokens: dict[str, str]) -> None:
    """dumps(..., compress=True) makes a '.'-prefixed zlib payload; it verifies too."""
    tok = django_tokens["compressed"]
    assert signing.TimestampSigner(key=SECRET, salt=SALT, fallback_keys=[]).unsign(tok)[0] == "."
    assert Verifier(SECRET).verify(tok).user == "42"


def test_our_tokens_are_what_django_loads() -> None:
    """Verifier.make (the `token` subcommand) makes what signing.loads reads, salt and all."""
    tok = Verifier(SECRET).make(7, ["b", "a", "a"], ttl=60)
    payload = signing.loads(tok, key=SECRET, salt=SALT, fallback_keys=[], max_age=10)
    assert payload["u"] == 7 and payload["ch"] == ["a", "b"]
    assert time.time() < payload["exp"] <= time.time() + 61


def test_wrong_salt_is_a_bad_signature(django_tokens: dict[str, str]) -> None:
    """A token Django signed for another purpose (default salt) is not a bridge token."""
    assert _refused(Verifier(SECRET), django_tokens["default_salt"]) == "bad token signature"


def test_forged_token_is_a_bad_signature() -> None:
    """A token signed with another key, or edited after signing, is refused."""
    verifier = Verifier(SECRET)
    assert _refused(verifier, token(1, "example_task", key="x" * 50)) == "bad token signature"
    genuine = token(1, "example_task:owner_id=1")
    value, _, signature = genuine.rpartition(":")
    forged_payload = _b64(json.dumps({"u": 1, "ch": ["example_task"]}).encode())
    stamp = value.rpartition(":")[2]
    assert _refused(verifier, f"{forged_payload}:{stamp}:{signature}") == "bad token signature"


# -- rotation and expiry -------------------------------------------------------------------


def test_rotation_accepts_the_old_key_as_a_fallback(django_tokens: dict[str, str]) -> None:
    """During a key rotation, tokens signed with the old key pass only when it is a fallback."""
    old_token = django_tokens["explicit_old_key"]
    assert Verifier(SECRET, [OLD]).verify(old_token).user == "42"
    assert _refused(Verifier(SECRET), old_token) == "bad token signature"
    assert Verifier(SECRET, [OLD]).verify(django_tokens["settings_key"]).user == "42"


def test_token_older_than_max_age_is_expired() -> None:
    """A token signed two hours ago fails --token-max-age 1h and passes 3h."""
    old = _Backdated(7200, key=SECRET, salt=SALT, fallback_keys=[]).sign_object(
        {"u": 1, "ch": ["example_task"]})
    assert _refused(Verifier(SECRET, max_age=3600), old) == "token expired: fetch a fresh one"
    assert Verifier(SECRET, max_age=3 * 3600).verify(old).user == "1"


def test_exp_shortens_a_token_life(django_tokens: dict[str, str]) -> None:
    """An `exp` in the past refuses a token that max_age still allows; a future one passes."""
    verifier = Verifier(SECRET, max_age=86400)
    assert _refused(verifier, django_tokens["expired_exp"]) == "token expired: fetch a fresh one"
    assert verifier.verify(django_tokens["future_exp"]).user == "42"
    assert _refused(verifier, token(1, "a", ttl=-1)) == "token expired: fetch a fresh one"


# -- malformed tokens: always TokenError, never a traceback ---------------------------------


@pytest.mark.parametrize(
    "tok",
    [None, 42, ["a"], {"token": "x"}, "", "x" * 5000, "no-separator", ":", "::", "a:b:c",
     "\ud800:abc:def", "\x00", "caf\u00e9:x:y"],
)
def test_malformed_tokens_are_refused(tok: object) -> None:
    """Wrong types, empty, oversized, no separators, lone surrogates: a TokenError each."""
    assert _refused(Verifier(SECRET), tok)


@pytest.mark.parametrize(
    ("signed_value", "reason"),
    [
        ("." + _b64(b"this is not zlib data"), "malformed token"),  # zlib.error
        (_b64(b"not json at all"), "malformed token"),
        ("!!!not base64!!!", "malformed token"),
        (_b64(zlib.compress(b"[1, 2]")), "malformed token"),
        (_b64(b"[1, 2]"), "malformed token"),
        (_b64(b'"a string"'), "malformed token"),
        (_b64(b'{"u": 1}'), "malformed token: bad channel list"),
        (_b64(b'{"u": 1, "ch": "example_task"}'), "malformed token: bad channel list"),
        (_b64(b'{"u": 1, "ch": ["Robert\'); DROP TABLE x;--"]}'),
         "malformed token: bad channel list"),
        (_b64(b'{"u": 1, "ch": [7]}'), "malformed token: bad channel list"),
        (_b64(b'{"u": {"id": 1}, "ch": []}'), "malformed token: bad user"),
        (_b64(b'{"u": true, "ch": []}'), "malformed token: bad user"),
        (_b64(b'{"u": 1, "ch": [], "exp": "tomorrow"}'), "malformed token: bad exp"),
        (_b64(b'{"u": 1, "ch": [], "exp": true}'), "malformed token: bad exp"),
        (_b64(b'{"u": 1, "ch": [], "exp": NaN}'), "malformed token: bad exp"),
        (_b64(b'{"u": 1, "ch": [], "exp": Infinity}'), "malformed token: bad exp"),
    ],
)
def test_validly_signed_garbage_is_malformed(signed_value: str, reason: str) -> None:
    """Even with a good signature, a payload that is not a bridge grant is refused cleanly."""
    assert _refused(Verifier(SECRET), _signer().sign(signed_value)) == reason


def test_a_daemon_without_a_key_refuses_every_token() -> None:
    """With no secret key, no token can be checked, so none is accepted."""
    assert "no secret key" in _refused(Verifier(None), token(1, "a"))


@settings(max_examples=300)
@given(st.text(max_size=300) | st.from_regex(r"[A-Za-z0-9_\-:.]{0,120}", fullmatch=True))
def test_random_strings_are_refused_with_token_error(tok: str) -> None:
    """No string makes verify raise anything but TokenError."""
    with pytest.raises(TokenError):
        Verifier(SECRET).verify(tok)


@settings(max_examples=200)
@given(st.binary(max_size=300), st.booleans())
def test_validly_signed_random_bytes_never_crash(data: bytes, dot: bool) -> None:
    """Any signed payload, '.'-prefixed (zlib) or not, gives a Grant or a TokenError."""
    tok = _signer().sign(("." if dot else "") + _b64(data))
    try:
        grant = Verifier(SECRET).verify(tok)
    except TokenError as exc:
        assert tok not in str(exc)
    else:
        assert isinstance(grant, Grant)


# -- grants --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grants", "channel", "covered"),
    [
        ({"example_task"}, "example_task", True),
        ({"example_task"}, "example_task:owner_id=7", True),
        ({"example_task:owner_id=7"}, "example_task:owner_id=7", True),
        ({"example_task:owner_id=7"}, "example_task", False),
        ({"example_task:owner_id=7"}, "example_task:owner_id=8", False),
        ({"example_task:owner_id=7"}, "example_task:owner_id=77", False),
        ({"example_task"}, "example_tasks", False),
        ({"example_task"}, "example_task_archive", False),
        ({"example"}, "example.task", False),
        (set(), "example_task", False),
    ],
)
def test_grant_covers(grants: set[str], channel: str, covered: bool) -> None:
    """NAME covers NAME and NAME:col=value; NAME:col=value covers only itself."""
    assert Grant("1", frozenset(grants)).covers(channel) is covered


# -- origins and cookies -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "ok"),
    [
        (None, "127.0.0.1:8765", (), True),  # not a browser: nothing to hijack
        ("http://127.0.0.1:8000", "127.0.0.1:8765", (), True),  # same host, any port
        ("https://app.example.com", "app.example.com", (), True),
        ("https://APP.example.com", "app.example.com:443", (), True),
        ("http://[::1]:3000", "[::1]:8765", (), True),
        ("https://evil.example", "app.example.com:8765", (), False),
        ("https://app.example.com.evil.example", "app.example.com", (), False),
        ("https://app.example.com@evil.example", "app.example.com", (), False),
        ("null", "app.example.com", (), False),  # sandboxed iframes, file:// pages
        ("http://[bad", "app.example.com", (), False),
        ("http://app.example.com", "[bad", (), False),
        ("http://app.example.com", None, (), False),
        ("http://app.example.com", "", (), False),
        ("https://app.example.com", "bridge.internal:8765", ("https://app.example.com",), True),
        ("https://APP.example.com/", "x", ("https://app.example.com",), True),
        ("http://app.example.com", "x", ("https://app.example.com",), False),  # scheme counts
        ("https://app.example.com:8443", "x", ("https://app.example.com",), False),
        ("https://app.example.com", "app.example.com", ("https://other.example",), False),
        ("https://anything.example", "x", ("*",), True),
    ],
)
def test_origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...],
                        ok: bool) -> None:
    """Default: the Origin's host is the Host connected to; --allowed-origins replaces that."""
    assert origin_allowed(origin, host, allowed) is ok


@pytest.mark.parametrize(
    ("host", "allowed", "ok"),
    [
        ("localhost", (), True),
        ("localhost:8765", (), True),
        ("127.0.0.1:8765", (), True),
        ("[::1]:8765", (), True),
        ("bridge.localhost", (), True),
        ("LOCALHOST.", (), True),
        ("evil.example", (), False),
        ("evil.example:8765", (), False),
        ("localhost.evil.example", (), False),
        ("127.0.0.1.evil.example", (), False),
        ("127.0.0.2", (), False),
        ("app.example:443", ("app.example",), True),
        ("App.Example.", ("app.example",), True),
        ("sub.app.example", ("app.example",), False),
        ("sub.app.example", (".app.example",), True),
        ("app.example", (".app.example",), True),
        ("badapp.example", (".app.example",), False),
        ("[fe80::1]:8765", ("[fe80::1]",), True),
        ("anything.example", ("*",), True),
        ("", ("*",), False),
        (None, ("*",), False),
        ("a b", ("*",), False),
        ("evil.example\r\nX: y", ("*",), False),
        ("[::1", ("*",), False),
        ("user@app.example", ("app.example",), False),
        ("app.example:99999999", ("app.example",), False),
    ],
)
def test_host_allowed(host: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    """Loopback names always pass; others only as listed (.name: subdomains); malformed fail."""
    assert host_allowed(host, allowed) is ok


def test_default_hosts_are_the_origins_hosts_and_a_specific_bind_address() -> None:
    """Without --allowed-hosts: --allowed-origins' hosts, and --host unless it is a wildcard."""
    assert default_hosts(("https://app.example", "http://App.example:8000", "*", "http://[bad",
                          "http://[::1]:80"), "0.0.0.0") == ("app.example", "[::1]")
    assert default_hosts((), "10.0.0.5") == ("10.0.0.5",)
    assert default_hosts((), "fe80::1") == ("[fe80::1]",)
    assert default_hosts((), "bridge.internal") == ("bridge.internal",)
    assert default_hosts((), "::") == ()


@pytest.mark.parametrize(
    ("header", "value"),
    [
        (None, None),
        ("", None),
        ("sessionid=abc", None),
        ("bridge_token=abc:def:ghi", "abc:def:ghi"),
        ("sessionid=abc; bridge_token=t1:x:y; csrftoken=z", "t1:x:y"),
        ('bridge_token="quoted:x:y"', "quoted:x:y"),
        ("bridge_token", None),
        ('=;;\x00"bridge_token=x', None),
    ],
)
def test_cookie_token(header: str | None, value: str | None) -> None:
    """The bridge_token cookie is found among others; a broken Cookie header gives None."""
    assert cookie_token(header) == value


PROXIES = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("10.0.0.0/8"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "proxies", "address"),
    [
        ("203.0.113.5", "", PROXIES, "203.0.113.5"),
        ("203.0.113.5", "198.51.100.1", PROXIES, "203.0.113.5"),  # peer not trusted
        ("127.0.0.1", "198.51.100.1", (), "127.0.0.1"),  # no trusted proxies at all
        ("127.0.0.1", "198.51.100.1", PROXIES, "198.51.100.1"),
        ("127.0.0.1", "spoofed, 198.51.100.1, 10.1.2.3", PROXIES, "198.51.100.1"),
        ("127.0.0.1", "10.1.1.1, 10.2.2.2", PROXIES, "10.1.1.1"),  # every hop a proxy
        ("127.0.0.1", " , ", PROXIES, "127.0.0.1"),
        ("127.0.0.1", "not-an-ip", PROXIES, "not-an-ip"),
    ],
)
def test_client_address(peer: str, forwarded: str, proxies: tuple[Any, ...],
                        address: str) -> None:
    """X-Forwarded-For is believed from trusted proxies only, up to the first untrusted hop."""
    assert client_address(peer, forwarded, proxies) == address


@pytest.mark.parametrize(
    ("granted", "legacy", "channels"),
    [
        ({"tasks", "notes"}, (), ("notes", "tasks")),
        ({"tasks", "notes"}, ("tasks",), ("tasks",)),
        ({"tasks:owner_id=7"}, ("tasks",), ("tasks:owner_id=7",)),  # row grant kept, narrowed
        ({"tasks"}, ("tasks:owner_id=7",), ("tasks:owner_id=7",)),  # legacy row channel kept
        ({"notes"}, ("tasks",), ()),
        (set(), ("tasks",), ()),
    ],
)
def test_legacy_channels(granted: set[str], legacy: tuple[str, ...],
                         channels: tuple[str, ...]) -> None:
    """A legacy client's channels: the grant narrowed to --legacy-channels, either way round."""
    assert legacy_channels(granted, legacy) == channels
