"""Token verification, grants, and the pure checks of a request (host, origin, address,
channels).

Django mints tokens; the daemon only verifies them. A token is what
`django.core.signing.dumps({"u": user_id, "ch": [channels]}, salt=SALT)`
makes, so verification uses Django's own TimestampSigner with explicit keys:
the daemon has no Django settings, and `signing.loads` would read them.
"""

from __future__ import annotations

import ipaddress
import math
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core import signing

from . import channels
from .errors import TokenError

__all__ = ["COOKIE", "SALT", "Grant", "TokenError", "Verifier", "client_address", "cookie_token",
           "legacy_channels", "origin_allowed"]

SALT = "pg_notify_bridge.token"
COOKIE = "bridge_token"


@dataclass(frozen=True)
class Grant:
    """Who a verified token speaks for and which channels it covers."""

    user: str | None
    channels: frozenset[str]

    def covers(self, channel: str) -> bool:
        return channels.granted(self.channels, channel)


class Verifier:
    """Checks tokens against the current secret key and the old keys of a rotation."""

    def __init__(self, key: str | None, fallback_keys: Iterable[str] = (), max_age: float = 3600):
        self._signer = (
            signing.TimestampSigner(key=key, salt=SALT, fallback_keys=list(fallback_keys))
            if key
            else None
        )
        self._max_age = max_age

    def verify(self, token: object) -> Grant:
        """The grant a token carries; raises TokenError with a reason a client may see."""
        if self._signer is None:
            raise TokenError("this daemon accepts no tokens: it has no secret key")
        if not isinstance(token, str) or not token or len(token) > 4096:
            raise TokenError("malformed token")
        try:
            payload = self._signer.unsign_object(token, max_age=self._max_age)
        except signing.SignatureExpired:
            raise TokenError("token expired: fetch a fresh one") from None
        except signing.BadSignature:
            raise TokenError("bad token signature") from None
        except Exception:
            raise TokenError("malformed token") from None
        return _grant(payload)

    def make(self, user: str | int | None, chans: Iterable[str], ttl: float | None = None) -> str:
        """Mint a token exactly as Django's signing.dumps would (for `python -m bridge token`)."""
        if self._signer is None:
            raise TokenError("no secret key to sign with")
        payload: dict[str, object] = {"u": user, "ch": sorted(set(chans))}
        if ttl is not None:
            payload["exp"] = int(time.time() + ttl)
        return self._signer.sign_object(payload)


def _grant(payload: object) -> Grant:
    if not isinstance(payload, dict):
        raise TokenError("malformed token")
    chans = payload.get("ch")
    if not isinstance(chans, list) or not all(channels.is_valid(c) for c in chans):
        raise TokenError("malformed token: bad channel list")
    exp = payload.get("exp")
    if exp is not None:
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or not math.isfinite(exp):
            raise TokenError("malformed token: bad exp")
        if exp < time.time():
            raise TokenError("token expired: fetch a fresh one")
    user = payload.get("u")
    if user is not None and (not isinstance(user, (str, int)) or isinstance(user, bool)):
        raise TokenError("malformed token: bad user")
    return Grant(None if user is None else str(user), frozenset(chans))


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a browser's Origin may connect.

    No Origin header means no browser, so nothing to hijack: it passes. With
    no configured list, the origin's host must equal the host the client
    connected to (any port), which stops another site from opening a socket
    that rides on the user's cookie. `*` in the list allows every origin.
    Origins compare without case and without a trailing slash; an Origin or
    Host that does not parse (`http://[bad`) is refused, never an error.
    """
    if origin is None:
        return True
    allowed = tuple(allowed)
    if allowed:
        return "*" in allowed or _normal(origin) in {_normal(a) for a in allowed}
    if not host:
        return False
    try:
        origin_host = urlsplit(origin).hostname
        request_host = urlsplit("//" + host).hostname
    except ValueError:
        return False
    return origin_host is not None and origin_host == request_host


LOOPBACK_HOSTS = ("localhost", ".localhost", "127.0.0.1", "[::1]")
"""Host names always answered: only a client on this machine reaches them, and a
DNS-rebinding page never sends them (its Host is the attacker's name)."""

# A Host header: a name or IPv4 address, or a bracketed IPv6 address, then an optional
# port (Django's host_validation_re).
_HOST_RE = re.compile(r"([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9.:]+\])(?::[0-9]{1,5})?")


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a request's Host header names this daemon.

    A DNS-rebinding page points its own name at the daemon's address, and then
    controls Host and Origin alike, so "the Origin's host equals Host" lets it
    in; only a list of the names the daemon really serves under stops it.
    Patterns follow Django's ALLOWED_HOSTS: `example.org` exactly,
    `.example.org` that name and its subdomains, `*` anything. Any port
    matches; case and a trailing dot do not matter; LOOPBACK_HOSTS always
    pass. A missing, empty or malformed Host fails, never raises.
    """
    if not host:
        return False
    match = _HOST_RE.fullmatch(host.lower())
    if not match:
        return False
    name = match.group(1).removesuffix(".")
    for pattern in (*LOOPBACK_HOSTS, *allowed):
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith(".") and (name == pattern[1:] or name.endswith(pattern)):
            return True
    return False


def default_hosts(allowed_origins: Iterable[str], bind_host: str | None) -> tuple[str, ...]:
    """--allowed-hosts when it is not set: the hosts of --allowed-origins (pages and daemon
    usually share a name, which is how the cookie reaches the daemon) and the --host
    address when it is a specific one (an IP literal Host is never a rebinding)."""
    hosts: list[str] = []
    for origin in allowed_origins:
        try:
            name = urlsplit(origin.strip()).hostname
        except ValueError:
            continue
        if name and origin.strip() != "*":
            hosts.append(f"[{name}]" if ":" in name else name)
    if bind_host and bind_host not in ("0.0.0.0", "::", "*"):
        try:
            ip = ipaddress.ip_address(bind_host)
            hosts.append(f"[{ip}]" if ip.version == 6 else str(ip))
        except ValueError:
            hosts.append(bind_host.lower())
    return tuple(dict.fromkeys(hosts))


def _normal(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def cookie_token(header: str | None) -> str | None:
    """The bridge_token value from a Cookie header, if present.

    Django's parse_cookie, not SimpleCookie: browsers send cookies that
    SimpleCookie gives up on (`a=b c`, `pref={"a":1}`), and one such cookie of
    another app must not hide ours.
    """
    if not header:
        return None
    from django.http.cookie import parse_cookie

    return parse_cookie(header).get(COOKIE) or None


def client_address(peer: str, forwarded: str,
                   trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """The address a connection counts against (--max-connections-per-ip, logs).

    X-Forwarded-For is believed only when the peer is a trusted proxy, and
    then only up to the first hop, from the right, that is not one: a client
    can prepend whatever it likes, but not past the proxies that appended.
    """
    if not forwarded or not _trusted(peer, trusted_proxies):
        return peer
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted_proxies):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str,
             trusted_proxies: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted_proxies)


def legacy_channels(granted: Iterable[str], legacy: Iterable[str]) -> tuple[str, ...]:
    """A legacy client's channels: what it may read, narrowed to --legacy-channels if set.

    The intersection, either way round: a row grant inside a legacy table
    channel stays (narrowed to that row channel), and so does a legacy row
    channel inside a table grant.
    """
    available = set(granted)
    wanted = set(legacy)
    if not wanted:
        return tuple(sorted(available))
    narrowed = {c for c in available if channels.granted(wanted, c)}
    narrowed |= {c for c in wanted if channels.granted(available, c)}
    return tuple(sorted(narrowed))
