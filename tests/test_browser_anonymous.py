"""Anonymous pages in Chromium: the tag's channels, a 403 from the token URL, the daemon's
--allow-anonymous channels, and no reconnect loop when the daemon refuses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.template import Context, Template
from django.test import RequestFactory, override_settings

from tests.django_site import Site
from tests.timing import scaled

DEADLINE_MS = scaled(30) * 1000


@dataclass
class Traffic:
    """What the page did on the network: token responses, sockets, frames both ways."""

    token_statuses: list[int] = field(default_factory=list)
    sockets: list[Any] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)


def anonymous_page(site: Site, page: Any, *channels: str) -> Traffic:
    """Open, at the site's origin, a page with the tag as rendered for an anonymous user."""
    from django.contrib.auth.models import AnonymousUser

    request = RequestFactory().get("/anonymous/")
    request.user = AnonymousUser()
    bridge = {"MODELS": {"example.Task": {"channel_column": "owner_id"}},
              "URL": f"ws://127.0.0.1:{site.daemon.port}/v1"}
    names = " ".join(f'"{c}"' for c in channels)
    with override_settings(BRIDGE=bridge):
        tag = Template("{% load bridge %}{% bridge_client " + names + " %}").render(
            Context({"request": request}))
    html = ("<!doctype html><html><body><span id='state'></span>" + tag +
            "<script>window.events = [];"
            " PgBridge.client.on('example_task', function (f) { events.push(f); });"
            " PgBridge.client.onState(function (s) {"
            " document.getElementById('state').dataset.state = s; });</script></body></html>")
    traffic = Traffic()

    def on_socket(ws: Any) -> None:
        traffic.sockets.append(ws)
        ws.on("framesent", lambda f: traffic.sent.append(json.loads(f)))
        ws.on("framereceived", lambda f: traffic.received.append(json.loads(f)))

    page.on("websocket", on_socket)
    page.on("response", lambda r: traffic.token_statuses.append(r.status)
            if "/bridge/token" in r.url else None)
    # A real page of the site, rewritten in place: the document keeps the site's origin
    # and local address (a routed response would trip Chromium's local network checks).
    page.goto(site.base + "/accounts/login/")
    page.evaluate("html => { document.open(); document.write(html); document.close(); }", html)
    return traffic


def restart_daemon(site: Site, *args: str) -> None:
    site.daemon.stop()
    site.daemon.args = (*site.daemon.args, *args)
    site.daemon.start()


def test_anonymous_page_reads_the_daemons_anonymous_channels(
        django_setup: str, example_site: Site, page: Any) -> None:
    """Token URL 403 -> connect without a token: the anonymous channel is live, the other is
    refused once and never asked again."""
    restart_daemon(example_site, "--allow-anonymous", "example_task:owner_id=7")
    traffic = anonymous_page(example_site, page, "example_task:owner_id=7", "example_task")
    page.wait_for_selector("#state[data-state=live]", state="attached", timeout=DEADLINE_MS)
    example_site.sql("UPDATE example_task SET title = 'seen anonymously' WHERE owner_id = 7")
    page.wait_for_function("window.events && window.events.length > 0", timeout=DEADLINE_MS)
    events = [f for f in traffic.received if f.get("type") == "event"]
    assert {f["channel"] for f in events} == {"example_task:owner_id=7"}
    errors = [f for f in traffic.received if f.get("type") == "error"]
    assert [(f["code"], f.get("channel")) for f in errors] == [("unauthorized", "example_task")]
    subscribes = sorted(f["channel"] for f in traffic.sent if f.get("type") == "subscribe")
    assert subscribes == ["example_task", "example_task:owner_id=7"]
    assert not any(f.get("type") == "auth" for f in traffic.sent)
    assert traffic.token_statuses == [403]
    assert len(traffic.sockets) == 1 and not traffic.sockets[0].is_closed()


def test_anonymous_page_stops_when_the_daemon_takes_no_anonymous_clients(
        django_setup: str, example_site: Site, page: Any) -> None:
    """A 4001 on a socket without a token leaves the page offline with no retry scheduled,
    until the tab becomes visible again."""
    restart_daemon(example_site, "--auth-timeout", "300ms")
    traffic = anonymous_page(example_site, page, "example_task")
    # window.PgBridge first: the page may still be loading bridge.js when the wait begins.
    page.wait_for_function("() => window.PgBridge && PgBridge.client._ws === null"
                           " && PgBridge.client.state === 'offline'", timeout=DEADLINE_MS)
    assert page.evaluate("PgBridge.client._timer") is None  # no reconnect waiting to fire
    assert traffic.token_statuses == [403] and len(traffic.sockets) == 1
    page.evaluate("document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_function("() => PgBridge.client._ws && PgBridge.client._ws.readyState === 1",
                           timeout=DEADLINE_MS)
    assert traffic.token_statuses == [403, 403] and len(traffic.sockets) == 2
