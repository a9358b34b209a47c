"""The browser-facing Django pieces: template tag, token view, cookie middleware, context."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from django.core import signing
from django.http import HttpResponse
from django.template import Context, Template
from django.test import Client, RequestFactory, override_settings

from bridge.auth import Verifier

SALT = "pg_notify_bridge.token"


def make_user(username: str, **extra: Any):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password="pw", **extra)


def staff_sees_all(user: Any, requested: list[str]) -> list[str]:
    """A CHANNELS_FOR_USER hook for the tests: staff get whole tables, others nothing."""
    return list(requested) if user.is_staff else []


def render_tag(user: Any, source: str = '{% load bridge %}{% bridge_client "example_task" %}'):  # type: ignore[no-untyped-def]
    request = RequestFactory().get("/live/")
    request.user = user
    html = Template(source).render(Context({"request": request}))
    match = re.search(r'<script id="pg-bridge-config" type="application/json">(.*?)</script>',
                      html)
    assert match, html
    return html, json.loads(match.group(1))


def verify(token: str) -> frozenset[str]:
    from django.conf import settings

    return Verifier(key=settings.SECRET_KEY).verify(token).channels


def test_tag_renders_script_and_a_token_for_the_users_own_rows(django_db: str) -> None:
    """The tag grants a channel-column model's rows of request.user only, and loads bridge.js."""
    user = make_user("tag-user")
    html, config = render_tag(user)
    assert '<script src="/static/django_hooks/bridge.js" data-config="pg-bridge-config">' in html
    assert config["channels"] == [f"example_task:owner_id={user.pk}"]
    assert config["tokenUrl"] == "/bridge/token"
    assert config["port"] == 8765 and config["secure"] is False and config["url"] is None
    assert verify(config["token"]) == frozenset({f"example_task:owner_id={user.pk}"})
    assert signing.loads(config["token"], salt=SALT)["u"] == str(user.pk)


@dataclass
class UuidUser:
    """A logged-in user whose primary key is a UUID, as with a custom user model."""

    pk: uuid.UUID
    is_authenticated: bool = True
    is_staff: bool = False


def test_tokens_work_for_a_uuid_primary_key(django_db: str) -> None:
    """A UUID pk is minted as a string: the tag, the token and the cookie all work."""
    from django_hooks import cookies

    user = UuidUser(uuid.UUID("12345678-1234-5678-1234-567812345678"))
    own = f"example_task:owner_id={user.pk}"
    _, config = render_tag(user)
    assert config["channels"] == [own] and verify(config["token"]) == frozenset({own})
    assert signing.loads(config["token"], salt=SALT)["u"] == str(user.pk)
    request = RequestFactory().get("/task-list")
    request.user = user  # type: ignore[assignment]
    first = HttpResponse()
    cookies.refresh(request, first)
    token = first.cookies["bridge_token"].value
    assert verify(token) == frozenset({own})
    again = RequestFactory().get("/task-list", HTTP_COOKIE=f"bridge_token={token}")
    again.user = user  # type: ignore[assignment]
    second = HttpResponse()
    cookies.refresh(again, second)
    assert "bridge_token" not in second.cookies  # its own fresh cookie: kept, not re-minted


def test_tag_gives_anonymous_users_no_token_but_the_channels_named(django_db: str) -> None:
    """Without a login no token is minted; the named channels are passed on, so bridge.js
    can ask the daemon for its anonymous channels."""
    from django.contrib.auth.models import AnonymousUser

    _, config = render_tag(AnonymousUser(), '{% load bridge %}{% bridge_client "public_news"'
                                            ' "example_task" "Bad Name" "public_news" %}')
    assert config["token"] is None
    assert config["channels"] == ["public_news", "example_task"]
    assert config["tokenUrl"] == "/bridge/token"


def test_channels_hook_decides_what_a_token_covers(django_db: str) -> None:
    """BRIDGE['CHANNELS_FOR_USER'] replaces the default policy."""
    bridge = {"MODELS": {"example.Task": {"channel_column": "owner_id"}},
              "CHANNELS_FOR_USER": "tests.test_django_client.staff_sees_all"}
    with override_settings(BRIDGE=bridge):
        _, staff = render_tag(make_user("boss", is_staff=True))
        _, other = render_tag(make_user("worker"))
    assert staff["channels"] == ["example_task"]
    assert other["token"] is None and other["channels"] == ["example_task"]


def test_tag_uses_configured_url_and_secure(django_db: str) -> None:
    """BRIDGE['URL'] and ['SECURE'] reach the page as given (for a proxy on another path)."""
    bridge = {"MODELS": ["example.Task"], "URL": "wss://push.example.org/v1", "SECURE": True}
    with override_settings(BRIDGE=bridge):
        _, config = render_tag(make_user("proxied"))
    assert config["url"] == "wss://push.example.org/v1" and config["secure"] is True
    assert config["channels"] == ["example_task"]


def test_original_snippet_template_renders_against_legacy_port(django_db: str) -> None:
    """The context processor makes the original design's WebSocket line render unchanged."""
    request = RequestFactory().get("/")
    source = ("var ws = new WebSocket(\"ws{{ websocket_secure | yesno:'s,' }}://\" + "
              "window.location.hostname + \":{{ websocket_port }}/\");")
    from django.template import engines

    template = engines["django"].from_string(source)
    assert template.render({}, request) == (
        'var ws = new WebSocket("ws://" + window.location.hostname + ":8765/");'
    )
    secure = RequestFactory().get("/", secure=True)
    assert 'new WebSocket("wss://"' in template.render({}, secure)


def test_middleware_sets_an_httponly_lax_cookie_for_logged_in_users(django_db: str) -> None:
    """A logged-in page response carries bridge_token: HttpOnly, SameSite=Lax, not Secure."""
    user = make_user("cookie-user")
    client = Client()
    client.force_login(user)
    response = client.get("/task-list")
    cookie = response.cookies["bridge_token"]
    assert cookie["httponly"] is True and cookie["samesite"] == "Lax" and not cookie["secure"]
    assert verify(cookie.value) == frozenset({f"example_task:owner_id={user.pk}"})


def test_middleware_marks_the_cookie_secure_over_https(django_db: str) -> None:
    """Over HTTPS the cookie is Secure."""
    client = Client()
    client.force_login(make_user("https-user"))
    assert client.get("/task-list", secure=True).cookies["bridge_token"]["secure"] is True


def test_middleware_keeps_a_fresh_cookie_and_drops_it_on_logout(django_db: str) -> None:
    """A fresh token is not re-sent each request; a logged-out browser loses it."""
    client = Client()
    client.force_login(make_user("steady"))
    token = client.get("/task-list").cookies["bridge_token"].value
    assert "bridge_token" not in client.get("/task-list").cookies
    client.logout()  # the test client forgets every cookie; a browser would keep this one
    client.cookies["bridge_token"] = token
    gone = client.get("/task-list").cookies["bridge_token"]
    assert gone.value == "" and gone["max-age"] == 0


NEVER_CACHE = {"max-age=0", "no-cache", "no-store", "must-revalidate", "private"}


def cache_control(response: HttpResponse) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


def test_a_page_that_embeds_a_token_is_never_cached(django_db: str) -> None:
    """/live/ renders {% bridge_client %} with a token: no cache may keep it past a logout."""
    client = Client()
    client.force_login(make_user("cached"))
    response = client.get("/live/")
    assert response.status_code == 200 and b'"token": "' in response.content
    assert cache_control(response) == NEVER_CACHE
    assert response.has_header("Expires")


def test_a_response_that_sets_the_token_cookie_is_never_cached(django_db: str) -> None:
    """The cookie's token rides in Set-Cookie: that response is not cached either; the next
    one, which sets nothing, keeps the view's own caching."""
    client = Client()
    client.force_login(make_user("cookie-cache"))
    first = client.get("/task-list")
    assert "bridge_token" in first.cookies and cache_control(first) == NEVER_CACHE
    second = client.get("/task-list")
    assert "bridge_token" not in second.cookies and "no-store" not in cache_control(second)


def test_only_pages_with_a_token_lose_their_cacheability(django_db: str) -> None:
    """The tag marks the request only when it embeds a token; the middleware acts only on the
    mark, so anonymous tag pages and pages without the tag keep their own caching."""
    from django.contrib.auth.models import AnonymousUser

    from django_hooks.middleware import BridgeCookieMiddleware, is_token_page

    def page(source: str) -> Any:
        def view(request: Any) -> HttpResponse:
            response = HttpResponse(Template(source).render(Context({"request": request})))
            response["Cache-Control"] = "max-age=60"
            return response
        return view

    from django.conf import settings

    tag = '{% load bridge %}{% bridge_client "example_task" %}'
    no_cookie = {**settings.BRIDGE, "COOKIE": False}  # the cookie's own rule is tested above
    for user, source, marked in ((make_user("marked"), tag, True), (AnonymousUser(), tag, False),
                                 (make_user("plain"), "no tag here", False)):
        request = RequestFactory().get("/")
        request.user = user
        with override_settings(BRIDGE=no_cookie):
            response = BridgeCookieMiddleware(page(source))(request)
        assert is_token_page(request) is marked
        assert cache_control(response) == (NEVER_CACHE if marked else {"max-age=60"})


def test_token_view_hands_out_a_fresh_token(django_db: str) -> None:
    """GET /bridge/token returns a token for the session's user, narrowed by the hook."""
    user = make_user("refresher")
    client = Client()
    client.force_login(user)
    response = client.get("/bridge/token", {"channel": f"example_task:owner_id={user.pk + 1}"})
    body = response.json()
    assert response.status_code == 200
    assert body["channels"] == [f"example_task:owner_id={user.pk}"]
    assert verify(body["token"]) == frozenset(body["channels"])
    assert body["expires_in"] == 3600
    assert "no-cache" in response["Cache-Control"]


def payments_table_with_triggers() -> None:
    """A table with bridge triggers that BRIDGE['MODELS'] does not list (rolled back after)."""
    from bridge import install
    from django_hooks.triggers import raw_connection

    conn = raw_connection("default")
    conn.execute("CREATE TABLE payments (id bigint PRIMARY KEY, amount numeric)")
    install.install(conn, "payments")


def test_token_view_refuses_a_table_that_is_not_watched(django_db: str) -> None:
    """A table with triggers but not in BRIDGE['MODELS'] is not granted by the default hook."""
    payments_table_with_triggers()
    client = Client()
    client.force_login(make_user("snooper"))
    response = client.get("/bridge/token", {"channel": "payments"})
    assert response.status_code == 403 and response.json()["channels"] == []
    mixed = client.get("/bridge/token", {"channel": ["payments", "example_task"]}).json()
    user_pk = client.session["_auth_user_id"]
    assert mixed["channels"] == [f"example_task:owner_id={user_pk}"]
    assert verify(mixed["token"]) == frozenset(mixed["channels"])


def test_tag_narrows_a_row_channel_of_another_user_to_the_users_own(django_db: str) -> None:
    """A template naming example_task:owner_id=<other> grants each user only their own rows."""
    other = make_user("owner-of-the-rows")
    user = make_user("someone-else")
    source = ("{% load bridge %}{% bridge_client "
              f'"example_task:owner_id={other.pk}" "payments" %}}')
    _, config = render_tag(user, source)
    assert config["channels"] == [f"example_task:owner_id={user.pk}"]
    assert verify(config["token"]) == frozenset({f"example_task:owner_id={user.pk}"})


def test_default_hook_grants_only_watched_models(django_db: str) -> None:
    """Unwatched tables and row channels of a model without a channel column are dropped."""
    from django_hooks.tokens import default_channels_for_user

    user = make_user("plain")
    with override_settings(BRIDGE={"MODELS": ["example.Task"]}):
        assert default_channels_for_user(user, ["payments", "example_task", "auth_user",
                                                "example_task:owner_id=1"]) == ["example_task"]
    staff = make_user("staffer", is_staff=True, is_superuser=True)
    assert default_channels_for_user(staff, ["example_task", "payments"]) == [
        f"example_task:owner_id={staff.pk}"]


def test_token_view_refuses_anonymous_users(django_db: str) -> None:
    """Nothing is granted without a session, so the view answers 403."""
    response = Client().get("/bridge/token")
    assert response.status_code == 403 and response.json()["channels"] == []


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_token_view_is_get_only(django_db: str, method: str) -> None:
    """The token view answers GET only."""
    client = Client()
    client.force_login(make_user(f"m-{method}"))
    assert getattr(client, method)("/bridge/token").status_code == 405


def test_metrics_urls_is_a_setting_with_a_default(django_db: str) -> None:
    """BRIDGE['METRICS_URLS'] defaults to none (the admin then reads the settings' own daemon),
    and the example lists its daemon's /metrics."""
    from django.conf import settings

    from django_hooks import admin_views, conf

    with override_settings(BRIDGE={"MODELS": ["example.Task"]}):
        assert conf.get("METRICS_URLS") == []
        assert admin_views.metrics_urls() == ["http://127.0.0.1:8765/metrics"]
    with override_settings(BRIDGE={"METRICS_URLS": "http://127.0.0.1:9801/metrics"}):
        assert admin_views.metrics_urls() == ["http://127.0.0.1:9801/metrics"]
    port = settings.BRIDGE["PORT"]
    assert settings.BRIDGE["METRICS_URLS"] == [f"http://127.0.0.1:{port}/metrics"]


@pytest.mark.parametrize(
    ("payload", "valid"),
    [
        ({"u": "1", "ch": ["example_task"]}, True),
        ({"u": "1", "ch": ["example_task"], "exp": float("inf")}, False),
        ({"u": "1", "ch": ["example_task"], "exp": float("nan")}, False),
        ({"u": "1", "ch": ["example_task"], "exp": True}, False),
        ({"u": "1", "ch": ["Not A Channel"]}, False),
        ({"u": ["1"], "ch": ["example_task"]}, False),
        (["not", "a", "dict"], False),
    ],
)
def test_django_reads_a_token_exactly_as_the_daemon_does(payload: Any, valid: bool) -> None:
    """tokens.read accepts a token only when the daemon's Verifier would (exp=inf included)."""
    from django.conf import settings

    from django_hooks import tokens

    signed = signing.dumps(payload, key=settings.SECRET_KEY, salt=SALT)
    daemon_accepts = True
    try:
        Verifier(key=settings.SECRET_KEY).verify(signed)
    except Exception:
        daemon_accepts = False
    assert daemon_accepts is valid
    assert (tokens.read(signed) is not None) is valid
