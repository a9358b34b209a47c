"""``{% load bridge %}{% bridge_client "tasks" %}``: bridge.js, its URL and a fresh token.

The tag asks the BRIDGE['CHANNELS_FOR_USER'] hook which of the named
channels `request.user` may read, mints a token for exactly those, and
renders them as JSON next to the script; bridge.js then connects on its own
and exposes the client as ``PgBridge.client``. Needs ``request`` in the
context (the ``django.template.context_processors.request`` processor). A
page with a token must not be cached: the tag marks the request, and
BridgeCookieMiddleware adds the never-cache headers (middleware.py).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

from bridge import channels as channel_names

from .. import conf, tokens
from ..context_processors import is_secure
from ..middleware import mark_token_page

register = template.Library()

CONFIG_ID = "pg-bridge-config"


def client_config(request: Any, requested: list[str]) -> dict[str, Any]:
    """What bridge.js needs: where to connect, the token, its channels, the token URL.

    With a token, the channels are those it grants. Without one (an anonymous
    user, or one the hook grants nothing), they are the channels named: bridge.js
    then connects without a token and the daemon's --allow-anonymous channels apply.
    """
    user = getattr(request, "user", None)
    token, granted = tokens.for_user(user, requested)
    if token is None:
        granted = [name for name in dict.fromkeys(requested) if channel_names.is_valid(name)]
    try:
        token_url = reverse("django_hooks:token")
    except NoReverseMatch:
        token_url = None
    return {
        "url": conf.get("URL"),
        "port": conf.public_port(),
        "secure": is_secure(request),
        "token": token,
        "channels": granted,
        "tokenUrl": token_url,
    }


@register.simple_tag(takes_context=True)
def bridge_client(context: template.Context, *channels: str) -> SafeString:
    """Render the config JSON and the bridge.js script tag for the named channels; a page
    that embeds a token is marked so that the middleware forbids caching it."""
    request = context.get("request")
    config = client_config(request, list(channels))
    if config["token"] is not None:
        mark_token_page(request)
    return format_html(
        '{}\n<script src="{}" data-config="{}"></script>',
        json_script(config, CONFIG_ID),
        static("django_hooks/bridge.js"),
        CONFIG_ID,
    )
