"""BridgeCookieMiddleware: keeps a `bridge_token` cookie on every authenticated response.

Put it after AuthenticationMiddleware. Legacy pages then authenticate to the
daemon's `/` endpoint with no change to their script.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import conf, cookies


class BridgeCookieMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if conf.get("COOKIE") and not getattr(response, "streaming", False):
            cookies.refresh(request, response)
        return response
