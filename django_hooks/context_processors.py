"""`websocket_port` and `websocket_secure`: what templates of the original design expect.

With this in TEMPLATES' context_processors, a template written for the
original management command (``"ws{{ websocket_secure|yesno:'s,' }}://" +
window.location.hostname + ":{{ websocket_port }}/"``) reaches the daemon's
legacy `/` endpoint unchanged.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from . import conf


def is_secure(request: HttpRequest | None) -> bool:
    """BRIDGE['SECURE'] when set, else whether this request came over HTTPS."""
    secure = conf.get("SECURE")
    if secure is not None:
        return bool(secure)
    return bool(request is not None and request.is_secure())


def websocket(request: HttpRequest) -> dict[str, Any]:
    return {"websocket_port": conf.public_port(), "websocket_secure": is_secure(request)}
