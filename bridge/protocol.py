"""Wire protocol v1: parse client frames, build server frames. Pure: no I/O.

Both sides ignore fields they do not know, so the protocol can grow. A bad
frame is answered with an `error` frame and the connection keeps working;
the server, not this module, decides when too many bad frames close it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from . import channels
from .errors import ProtocolError

# Error codes (docs/protocol.md, `/v1` messages).
BAD_MESSAGE = "bad_message"
UNKNOWN_TYPE = "unknown_type"
BAD_CHANNEL = "bad_channel"
FORBIDDEN = "forbidden"
TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
UNAUTHORIZED = "unauthorized"

# Close codes (docs/protocol.md, `/v1` messages).
CLOSE_GOING_AWAY = 1001
CLOSE_INVALID_UTF8 = 1007
CLOSE_TOO_BIG = 1009
CLOSE_UNAUTHORIZED = 4001
CLOSE_FORBIDDEN = 4003
CLOSE_TOO_SLOW = 4008
CLOSE_TOO_MANY_BAD = 4029


@dataclass(frozen=True)
class Auth:
    token: str


@dataclass(frozen=True)
class Subscribe:
    channel: str
    since: str | None


@dataclass(frozen=True)
class Unsubscribe:
    channel: str


@dataclass(frozen=True)
class Ping:
    pass


Message = Auth | Subscribe | Unsubscribe | Ping


def parse(data: str | bytes) -> Message:
    """Turn one client frame into a message, or raise ProtocolError."""
    if not isinstance(data, str):
        raise ProtocolError(BAD_MESSAGE, "binary frames are not supported: send JSON text")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):
        raise ProtocolError(BAD_MESSAGE, "frame is not valid JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError(BAD_MESSAGE, "frame must be a JSON object with a type")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(BAD_MESSAGE, "missing field: type")
    if kind == "ping":
        return Ping()
    if kind == "auth":
        token = obj.get("token")
        if not isinstance(token, str) or not token:
            raise ProtocolError(BAD_MESSAGE, "auth needs a token string")
        return Auth(token)
    if kind in ("subscribe", "unsubscribe"):
        channel = obj.get("channel")
        if not isinstance(channel, str):
            raise ProtocolError(BAD_MESSAGE, f"{kind} needs a channel string")
        if not channels.is_valid(channel):
            raise ProtocolError(BAD_CHANNEL, f"invalid channel name {channel[:80]!r}")
        if kind == "unsubscribe":
            return Unsubscribe(channel)
        since = obj.get("since")
        if since is not None and not isinstance(since, str):
            raise ProtocolError(BAD_MESSAGE, "since must be a position string")
        return Subscribe(channel, since)
    raise ProtocolError(UNKNOWN_TYPE, f"unknown type {kind[:40]!r}")


def _frame(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def event_frame(channel: str, position: str, table: str, op: str, pks: Any, count: int) -> bytes:
    return _frame({"type": "event", "channel": channel, "position": position, "table": table,
                   "op": op, "pks": pks, "count": count})


def subscribed_frame(channel: str, position: str) -> bytes:
    return _frame({"type": "subscribed", "channel": channel, "position": position})


def resync_frame(channel: str, position: str, reason: str) -> bytes:
    return _frame({"type": "resync", "channel": channel, "position": position, "reason": reason})


def authenticated_frame(granted: list[str]) -> bytes:
    return _frame({"type": "authenticated", "channels": granted})


def error_frame(code: str, message: str, channel: str | None = None) -> bytes:
    obj: dict[str, Any] = {"type": "error", "code": code, "message": message}
    if channel is not None:
        obj["channel"] = channel
    return _frame(obj)


PONG = _frame({"type": "pong"})
LEGACY_UPDATED = b"updated"
