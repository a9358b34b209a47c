"""The `bridge_token` cookie: auth for legacy pages, which cannot send an `auth` message.

Cookies belong to a host, not a port, so a cookie set by Django on :8000 rides
along with the WebSocket handshake to the daemon on :8765 of the same host.
HttpOnly keeps page scripts from reading it; SameSite=Lax keeps other sites'
pages from using it (the daemon also checks Origin). A response that sets
it carries a token in Set-Cookie, so it gets the never-cache headers too.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from . import conf, tokens
from .context_processors import is_secure


def set_cookie(response: HttpResponse, request: HttpRequest, token: str) -> None:
    """Set the cookie; the response then carries a token, so no cache may keep it."""
    add_never_cache_headers(response)
    response.set_cookie(
        tokens.COOKIE_NAME,
        token,
        max_age=int(conf.token_max_age()),
        httponly=True,
        samesite="Lax",
        secure=is_secure(request),
    )


def refresh(request: HttpRequest, response: HttpResponse) -> None:
    """Set a fresh cookie when it is missing, past half its life or someone else's; drop it
    when the user logged out."""
    user = getattr(request, "user", None)
    current = request.COOKIES.get(tokens.COOKIE_NAME)
    if user is None or not user.is_authenticated:
        if current:
            response.delete_cookie(tokens.COOKIE_NAME, samesite="Lax")
        return
    if current:
        grant = tokens.read(current, max_age=conf.token_max_age() / 2)
        if grant is not None and grant.user == tokens.user_key(user):
            return
    token, _ = tokens.for_user(user, tokens.cookie_channels())
    if token is None:
        if current:
            response.delete_cookie(tokens.COOKIE_NAME, samesite="Lax")
        return
    set_cookie(response, request, token)
