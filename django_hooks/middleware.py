"""BridgeCookieMiddleware: the `bridge_token` cookie, and no caching of pages holding a token.

Put it after AuthenticationMiddleware. Legacy pages then authenticate to the
daemon's `/` endpoint with no change to their script.

A page rendered with ``{% bridge_client %}`` carries a token in its HTML. A
browser or proxy cache would keep serving it after logout, and the token in
it would still open the daemon until it expires. So the tag marks the
request (mark_token_page) and this middleware sends that response with
Django's never-cache headers (``Cache-Control: max-age=0, no-cache, no-store,
must-revalidate, private``). A project without the middleware must wrap such
views in ``django.views.decorators.cache.never_cache`` itself (docs/django.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from . import conf, cookies

_TOKEN_PAGE = "_pg_bridge_token_page"


def mark_token_page(request: Any) -> None:
    """Note that the response to `request` embeds a token (the template tag calls this)."""
    if request is not None:
        setattr(request, _TOKEN_PAGE, True)


def is_token_page(request: Any) -> bool:
    return bool(getattr(request, _TOKEN_PAGE, False))


class BridgeCookieMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if is_token_page(request):
            add_never_cache_headers(response)
        if conf.get("COOKIE") and not getattr(response, "streaming", False):
            cookies.refresh(request, response)
        return response
