"""``{% load bridge %}``: the bridge_client, live (a block) and live_attrs tags.

``{% bridge_client "orders.Order" %}`` asks the BRIDGE['CHANNELS_FOR_USER']
hook which of the named models or channels `request.user` may read, mints a
token for exactly those, and renders them as JSON next to bridge.js, which
then connects on its own as ``PgBridge.client``.

``{% live "orders.Order" %}...{% endlive %}`` marks a region that bridge.js
refetches (the page's own URL, or ``src=``) and morphs in place when one of
its channels changes; ``<div hx-get=... hx-trigger="bridge:change"
{% live_attrs "orders.Order" %}>`` does the same for htmx. Both carry the
page's render position (`positions.py`), so bridge.js subscribes from where
the render was and a page that missed nothing fetches nothing.

Every tag on a page adds its names to one per-request list and mints its
token for all of them so far, and bridge.js takes the last config in the
page: one token, one connection, whatever the number of regions. Needs
``request`` in the context (``django.template.context_processors.request``).
A page with a token must not be cached: every tag that renders one marks the
request, and BridgeCookieMiddleware adds the never-cache headers
(middleware.py).
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any

from django import template
from django.template.base import FilterExpression, NodeList, Parser, Token
from django.templatetags.static import static
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString, mark_safe

from bridge import channels as channel_names

from .. import conf, positions, tokens
from ..context_processors import is_secure
from ..middleware import mark_token_page

register = template.Library()
logger = logging.getLogger("django_hooks")

CONFIG_ID = "pg-bridge-config"
CONFIG_CLASS = "pg-bridge-config"
IDIOMORPH = "django_hooks/idiomorph-0.8.0.min.js"
_LIVE_OPTIONS = ("src", "id", "tag")
_TAGS = frozenset({"div", "section", "article", "main", "aside", "span", "ul", "ol", "dl",
                   "tbody", "thead", "tfoot", "tr", "p", "form", "fieldset", "nav"})


@dataclass
class Page:
    """What the tags of one request have asked for so far."""

    requested: list[str] = field(default_factory=list)  # channels, in order, no repeats
    labels: dict[str, str] = field(default_factory=dict)  # label as written -> its channel
    live: list[str] = field(default_factory=list)  # channels whose HTML was rendered here
    regions: itertools.count = field(default_factory=lambda: itertools.count(1))
    bridge_js: bool = False  # bridge.js already in the page
    idiomorph: bool = False  # the morphing library likewise
    since: str | None = None

    def add(self, names: list[str]) -> list[str]:
        """Map labels to channels (conf.channel_for), remember them; the channels, in order."""
        result = []
        for name in names:
            channel = conf.channel_for(name)
            if channel != name:
                self.labels[name] = channel
            if channel not in self.requested:
                self.requested.append(channel)
            result.append(channel)
        return result


def page_for(request: Any) -> Page:
    """The per-request Page (a throwaway one when the context has no request)."""
    if request is None:
        return Page()
    page = getattr(request, "_bridge_page", None)
    if page is None:
        page = Page()
        request._bridge_page = page
    return page


def granted_for(request: Any, channels: list[str]) -> tuple[str | None, list[str]]:
    """The token and channels the hook grants of `channels`; without a token, the valid
    names themselves (bridge.js then connects without one, for --allow-anonymous)."""
    token, granted = tokens.for_user(getattr(request, "user", None), channels)
    if token is None:
        granted = [name for name in dict.fromkeys(channels) if channel_names.is_valid(name)]
    return token, granted


def _covered(granted: list[str], channel: str) -> list[str]:
    """The granted channels that stand for a requested one (the hook may narrow a table
    channel to a row channel, `tasks` -> `tasks:owner_id=7`)."""
    base = channel.partition(":")[0]
    return [name for name in granted if name == channel or name.partition(":")[0] == base]


def client_config(request: Any, requested: list[str]) -> dict[str, Any]:
    """What bridge.js needs: where to connect, the token, its channels, the token URL.

    `requested` is added to the page's list first; the token covers all of it.
    `labels` maps each model label written in a tag to the channels granted
    for it, so ``refetchOn("orders.Order", ...)`` works in the page's script;
    `live` and `since` say which channels were rendered into the page and at
    which position (the render position), so bridge.js resumes them from there.
    """
    page = page_for(request)
    page.add(requested)
    token, granted = granted_for(request, page.requested)
    if token is not None:
        mark_token_page(request)
    try:
        token_url = reverse("django_hooks:token")
    except NoReverseMatch:
        token_url = None
    live = [name for channel in page.live for name in _covered(granted, channel)]
    return {
        "url": conf.get("URL"),
        "port": conf.public_port(),
        "secure": is_secure(request),
        "token": token,
        "channels": granted,
        "tokenUrl": token_url,
        "labels": {label: _covered(granted, channel) for label, channel in page.labels.items()},
        "live": list(dict.fromkeys(live)),
        "since": page.since if live else None,
    }


def _live_scripts(page: Page) -> SafeString:
    """idiomorph and bridge.js for a region, deferred (they run once the page is parsed, so
    bridge.js sees every region), each once per page."""
    html = mark_safe("")
    if not page.idiomorph:
        page.idiomorph = True
        html = format_html('{}<script src="{}" defer></script>', html, static(IDIOMORPH))
    if not page.bridge_js:
        page.bridge_js = True
        html = format_html('{}<script src="{}" defer></script>', html,
                           static("django_hooks/bridge.js"))
    return html


@register.simple_tag(takes_context=True)
def bridge_client(context: template.Context, *channels: str) -> SafeString:
    """Render the config JSON and the bridge.js script tag for the named models or channels."""
    request = context.get("request")
    page = page_for(request)
    config = client_config(request, list(channels))
    if page.bridge_js:  # a region loaded it (deferred): it reads the last config
        return _config_json(config)
    page.bridge_js = True  # loaded now, not deferred: the page's own script may use it next
    return format_html(
        '{}\n<script src="{}" data-config="{}"></script>',
        json_script(config, CONFIG_ID), static("django_hooks/bridge.js"), CONFIG_ID,
    )


def _config_json(config: dict[str, Any]) -> SafeString:
    """A config bridge.js finds by class; the last in the page wins (it covers the most)."""
    opening = '<script type="application/json">'
    return mark_safe(json_script(config).replace(  # json_script escapes the JSON itself
        opening, f'<script type="application/json" class="{CONFIG_CLASS}">', 1))


def _mark_live(request: Any, page: Page, channels: list[str]) -> list[str]:
    """Record rendered channels and the page's render position; the granted channels."""
    capture = positions.for_request(request)
    if capture is not None:
        page.since = capture.get()
    elif page.since is None and request is not None and \
            positions.REFRESH_HEADER not in getattr(request, "headers", {}) and \
            getattr(request, "bridge_render", None) != positions.SKIPPED:
        logger.warning(
            "{%% live %%} on %s has no render position, so bridge.js refetches it once on"
            " load: add \"django_hooks.positions.LiveRenderMiddleware\" to MIDDLEWARE",
            getattr(request, "path", "?"),
        )
    for channel in channels:
        if channel not in page.live:
            page.live.append(channel)
    _, granted = granted_for(request, channels)
    return [name for channel in channels for name in _covered(granted, channel)]


class LiveNode(template.Node):
    def __init__(self, names: list[FilterExpression], options: dict[str, FilterExpression],
                 nodelist: NodeList) -> None:
        self.names = names
        self.options = options
        self.nodelist = nodelist

    def render(self, context: template.Context) -> SafeString:
        request = context.get("request")
        page = page_for(request)
        names = [str(name.resolve(context)) for name in self.names]
        opts = {key: value.resolve(context) for key, value in self.options.items()}
        region_id = str(opts.get("id") or f"bridge-live-{next(page.regions)}")
        channels = page.add(names)
        granted = _mark_live(request, page, channels)  # before the region's own queries
        content = self.nodelist.render(context)
        config = client_config(request, [])
        src = opts.get("src")
        tag = str(opts.get("tag") or "div")
        if tag not in _TAGS:
            raise template.TemplateSyntaxError(
                f"{{% live tag={tag!r} %}}: the region's element must be one of"
                f" {', '.join(sorted(_TAGS))}"
            )
        return format_html(
            '<{} id="{}" data-bridge-live="{}"{}>{}</{}>\n{}{}',
            mark_safe(tag), region_id,
            ",".join(granted),
            format_html(' data-bridge-src="{}"', src) if src else "",
            content, mark_safe(tag),
            _config_json(config),
            _live_scripts(page),
        )


@register.tag("live")
def do_live(parser: Parser, token: Token) -> LiveNode:
    """``{% live "orders.Order" ... [src="/partial"] [id="x"] [tag="tbody"] %}...{% endlive %}``."""
    bits = token.split_contents()
    names: list[FilterExpression] = []
    options: dict[str, FilterExpression] = {}
    for bit in bits[1:]:
        key, eq, value = bit.partition("=")
        if eq and key in _LIVE_OPTIONS:
            options[key] = parser.compile_filter(value)
        elif eq and not key.startswith(('"', "'")):
            raise template.TemplateSyntaxError(
                f"{{% live %}} takes model labels or channels, then src=, id= or tag=; not {key}="
            )
        else:
            names.append(parser.compile_filter(bit))
    if not names:
        raise template.TemplateSyntaxError(
            '{% live %} needs at least one model label or channel: {% live "orders.Order" %}'
        )
    nodelist = parser.parse(("endlive",))
    parser.delete_first_token()
    return LiveNode(names, options, nodelist)


@register.simple_tag(takes_context=True)
def live_attrs(context: template.Context, *names: str) -> SafeString:
    """``data-bridge-on`` for an element (htmx's hx-get) that refreshes when a model changes.

    bridge.js dispatches ``bridge:change`` on the element (throttled like a
    region); ``hx-trigger="bridge:change"`` makes htmx refetch it. The page
    needs ``{% bridge_client %}`` after it (end of body) for the script.
    """
    request = context.get("request")
    page = page_for(request)
    granted = _mark_live(request, page, page.add(list(names)))
    return format_html('data-bridge-on="{}"', ",".join(granted))
