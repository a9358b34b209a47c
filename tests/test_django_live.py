"""Live regions on the Django side: labels to channels, the render position, the tags."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import psycopg
import pytest
from django.http import HttpRequest, HttpResponse
from django.template import Context, Template, TemplateSyntaxError
from django.test import Client, RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from bridge import log
from bridge.errors import NoSchemaError


def make_user(username: str, **extra: Any):  # type: ignore[no-untyped-def]
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create_user(username, password="pw", **extra)


def render(source: str, user: Any, request: HttpRequest | None = None) -> str:
    request = request or RequestFactory().get("/page/")
    request.user = user
    return Template("{% load bridge %}" + source).render(Context({"request": request}))


def configs(html: str) -> list[dict[str, Any]]:
    """Every config JSON in the page, in document order."""
    found = re.findall(r'<script (?:id="pg-bridge-config" )?(?:type="application/json")'
                       r'(?: class="pg-bridge-config")?>(.*?)</script>', html, re.S)
    return [json.loads(text) for text in found]


# Labels -------------------------------------------------------------------------


def test_channel_for_maps_a_model_label_to_its_channel(django_db: str) -> None:
    """A model label in any case becomes its table's channel, a row suffix carried over;
    table names and other channels pass through unchanged."""
    from django_hooks.conf import channel_for

    assert channel_for("example.Task") == "example_task"
    assert channel_for("example.task") == "example_task"
    assert channel_for("example.Task:owner_id=7") == "example_task:owner_id=7"
    assert channel_for("example_task") == "example_task"
    assert channel_for("public_news") == "public_news"
    with override_settings(BRIDGE={"MODELS": {"example.Task": {"channel": "tasks"}}}):
        assert channel_for("example.Task") == "tasks"


def test_channel_for_refuses_an_unwatched_model_naming_the_setting(django_db: str) -> None:
    """A model that is not in BRIDGE['MODELS'] would never get an event: say how to add it."""
    from django_hooks.conf import channel_for
    from django_hooks.watch import WatchError

    with pytest.raises(WatchError, match=r"'auth.User' is a model but not in BRIDGE\['MODELS'\]"):
        channel_for("auth.User")


def test_channel_for_refuses_a_label_of_no_installed_model(django_db: str) -> None:
    """A misspelt label is an error naming the form, not a silent channel nobody fills."""
    from django_hooks.conf import channel_for
    from django_hooks.watch import WatchError

    with pytest.raises(WatchError, match=r"'example\.Tsak' is not an installed model"):
        channel_for("example.Tsak")


def test_bridge_client_takes_a_label_and_maps_it_for_refetchon(django_db: str) -> None:
    """{% bridge_client "example.Task" %} grants the user's rows and tells bridge.js which
    channels the label stands for."""
    user = make_user("label-user")
    (config,) = configs(render('{% bridge_client "example.Task" %}', user))
    own = f"example_task:owner_id={user.pk}"
    assert config["channels"] == [own]
    assert config["labels"] == {"example.Task": [own]}
    assert config["live"] == [] and config["since"] is None  # loaded by script: no handoff


def test_token_view_takes_a_label(django_db: str) -> None:
    """/bridge/token?channel=example.Task answers for the label's channel."""
    user = make_user("token-label")
    client = Client()
    client.force_login(user)
    body = client.get("/bridge/token", {"channel": "example.Task"}).json()
    assert body["channels"] == [f"example_task:owner_id={user.pk}"]


def test_token_view_refuses_an_unwatched_label_with_the_fix(django_db: str) -> None:
    """A label of an unwatched model is a 400 whose message names BRIDGE['MODELS']."""
    client = Client()
    client.force_login(make_user("token-bad-label"))
    response = client.get("/bridge/token", {"channel": "auth.User"})
    assert response.status_code == 400
    assert "BRIDGE['MODELS']" in response.json()["message"]


# The render position ------------------------------------------------------------


def daemon_head(url: str) -> tuple[str, log.Pos]:
    """The db_id and head a daemon reads (bridge.log on its own connection)."""

    async def head() -> tuple[str, log.Pos]:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            meta = await log.meta(conn)
            return meta["db_id"], await log.head(conn)

    return asyncio.run(head())


def test_position_is_the_head_the_daemon_gives_out(django_db: str) -> None:
    """Django's render position is the daemon's head, encoded as a daemon with the project's
    secret encodes it (Positions.from_config, what the daemon builds its hub with)."""
    from django.conf import settings

    from bridge.positions import Positions
    from django_hooks import positions

    db_id, head = daemon_head(django_db)
    daemon = Positions.from_config(settings.SECRET_KEY, [])
    assert positions.read() == daemon.encode(db_id, head)
    assert daemon.decode(positions.read(), db_id) == head


def test_position_of_a_database_without_the_schema_names_the_fix(django_db: str) -> None:
    """No bridge schema: an error naming migrate and bridge_install_triggers."""
    from django.db import connection, transaction

    from django_hooks import positions

    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("ALTER SCHEMA bridge RENAME TO bridge_hidden")
        with pytest.raises(NoSchemaError, match=r"no bridge schema: run `python manage\.py"
                           r" migrate`.*`python manage\.py bridge_install_triggers`"), \
                transaction.atomic():
            positions.read()
        transaction.set_rollback(True)


def test_middleware_reads_the_position_before_the_first_query(django_db: str) -> None:
    """The head query runs before the view's own queries, and only once."""
    from django.contrib.auth.models import User
    from django.db import connection

    from django_hooks import positions

    def view(request: HttpRequest) -> HttpResponse:
        list(User.objects.all())
        list(User.objects.all())
        return HttpResponse(positions.for_request(request).get())  # type: ignore[union-attr]

    middleware = positions.LiveRenderMiddleware(view)
    with CaptureQueriesContext(connection) as queries:
        response = middleware(RequestFactory().get("/page/"))
    statements = [q["sql"] for q in queries.captured_queries]
    assert len(statements) == 3
    assert "bridge.log" in statements[0] and "auth_user" in statements[1]
    assert response.content.decode() == positions.read()


def test_middleware_skips_writes_and_region_refetches(django_db: str) -> None:
    """POSTs and bridge.js's refetches (X-Bridge-Live) pay no position query."""
    from django.db import connection

    from django_hooks import positions

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(positions.for_request(request)))

    middleware = positions.LiveRenderMiddleware(view)
    factory = RequestFactory()
    with CaptureQueriesContext(connection) as queries:
        posted = middleware(factory.post("/page/"))
        refetch = middleware(factory.get("/page/", HTTP_X_BRIDGE_LIVE="bridge-live-1"))
    assert queries.captured_queries == []
    assert posted.content == refetch.content == b"None"


def test_middleware_skips_data_requests_and_keeps_pages_and_htmx(django_db: str) -> None:
    """fetch() and jQuery data requests pay no position query; navigations and htmx do."""
    from django.db import connection

    from django_hooks import positions

    def view(request: HttpRequest) -> HttpResponse:
        capture = positions.for_request(request)
        return HttpResponse("none" if capture is None else capture.get())

    middleware = positions.LiveRenderMiddleware(view)
    factory = RequestFactory()
    skipped = {
        "fetch()": {"HTTP_SEC_FETCH_DEST": "empty", "HTTP_SEC_FETCH_MODE": "cors"},
        "$.getJSON": {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"},
    }
    for name, headers in skipped.items():
        with CaptureQueriesContext(connection) as queries:
            response = middleware(factory.get("/task-list", **headers))
        assert queries.captured_queries == [], name
        assert response.content == b"none", name
    kept = {
        "navigation": {"HTTP_SEC_FETCH_DEST": "document", "HTTP_SEC_FETCH_MODE": "navigate"},
        "htmx": {"HTTP_SEC_FETCH_DEST": "empty", "HTTP_HX_REQUEST": "true"},
        "no fetch metadata": {},
    }
    for name, headers in kept.items():
        with CaptureQueriesContext(connection) as queries:
            response = middleware(factory.get("/page/", **headers))
        assert len(queries.captured_queries) == 1, name
        assert response.content.decode() == positions.read(), name


def test_live_in_a_skipped_data_request_falls_back_quietly(
        django_db: str, caplog: pytest.LogCaptureFixture) -> None:
    """A region rendered by a fetch() request has no position (bridge.js refetches it once on
    load) and logs no warning to add a middleware that is there."""
    from django_hooks import positions

    user = make_user("fetched")

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(render('{% live "example.Task" %}x{% endlive %}', user, request))

    with caplog.at_level(logging.WARNING, logger="django_hooks"):
        response = positions.LiveRenderMiddleware(view)(
            RequestFactory().get("/fragment/", HTTP_SEC_FETCH_DEST="empty"))
    assert configs(response.content.decode())[-1]["since"] is None
    assert "LiveRenderMiddleware" not in caplog.text


# {% live %} and {% live_attrs %} ---------------------------------------------------


def test_live_renders_the_region_its_channels_and_the_render_position(django_db: str) -> None:
    """A region carries the user's granted channels; the config carries the render position
    read by the middleware and a token covering them; the scripts come once, deferred."""
    from django_hooks import positions, tokens

    user = make_user("region-user")
    request = RequestFactory().get("/page/")
    capture = positions.RenderPosition()
    request.bridge_render = capture  # type: ignore[attr-defined]
    html = render('{% live "example.Task" %}<p>inside</p>{% endlive %}'
                  '{% live "example_task" src="/rows" id="rows" %}rows{% endlive %}',
                  user, request)
    own = f"example_task:owner_id={user.pk}"
    assert f'<div id="bridge-live-1" data-bridge-live="{own}"><p>inside</p></div>' in html
    assert f'<div id="rows" data-bridge-live="{own}" data-bridge-src="/rows">rows</div>' in html
    assert html.count("bridge.js") == 1 and html.count("idiomorph-0.8.0.min.js") == 1
    assert '<script src="/static/django_hooks/bridge.js" defer></script>' in html
    last = configs(html)[-1]
    assert last["live"] == [own] and last["since"] == capture.value == positions.read()
    grant = tokens.read(last["token"])
    assert grant is not None and grant.channels == {own}


def test_live_without_the_middleware_warns_and_falls_back_to_a_first_refetch(
        django_db: str, caplog: pytest.LogCaptureFixture) -> None:
    """No render position: the config has none (bridge.js refetches once on load) and the
    log names the middleware to add."""
    with caplog.at_level(logging.WARNING, logger="django_hooks"):
        html = render('{% live "example.Task" %}x{% endlive %}', make_user("no-mw"))
    assert configs(html)[-1]["since"] is None
    assert "django_hooks.positions.LiveRenderMiddleware" in caplog.text


def test_bridge_client_after_regions_covers_them_and_loads_nothing_twice(
        django_db: str) -> None:
    """One token for the page: {% bridge_client %} after a region and an htmx element covers
    their channels and its own, and adds no second bridge.js."""
    from django_hooks import positions

    user = make_user("both-user")
    request = RequestFactory().get("/page/")
    request.bridge_render = positions.RenderPosition()  # type: ignore[attr-defined]
    html = render('{% live "example.Task" %}x{% endlive %}'
                  '<div hx-get="/rows" {% live_attrs "example.Task" %}></div>'
                  '{% bridge_client "public_news" %}', user, request)
    own = f"example_task:owner_id={user.pk}"
    assert f'<div hx-get="/rows" data-bridge-on="{own}"></div>' in html
    assert html.count("bridge.js") == 1
    last = configs(html)[-1]
    assert last["channels"] == [own] and last["live"] == [own] and last["since"]
    assert last["labels"] == {"example.Task": [own]}


def test_live_tag_syntax_errors_say_what_it_takes(django_db: str) -> None:
    """No names, or an unknown option, is a TemplateSyntaxError showing the right form."""
    with pytest.raises(TemplateSyntaxError, match="needs at least one model label"):
        Template("{% load bridge %}{% live %}x{% endlive %}")
    with pytest.raises(TemplateSyntaxError, match="then src=, id= or tag=; not url="):
        Template('{% load bridge %}{% live "example.Task" url="/x" %}x{% endlive %}')


def test_live_tag_option_names_the_element_and_refuses_others(django_db: str) -> None:
    """tag="tbody" makes the region a table body (rows can be a region); an element that is
    not on the list is an error listing those that are."""
    user = make_user("tag-option")
    html = render('<table>{% live "example.Task" tag="tbody" id="rows" %}<tr></tr>{% endlive %}'
                  '</table>', user)
    own = f"example_task:owner_id={user.pk}"
    assert f'<tbody id="rows" data-bridge-live="{own}"><tr></tr></tbody>' in html
    with pytest.raises(TemplateSyntaxError, match=r"must be one of .*tbody"):
        render('{% live "example.Task" tag="script" %}x{% endlive %}', user)


def test_live_with_an_unwatched_model_is_an_error_naming_the_setting(django_db: str) -> None:
    """{% live "auth.User" %} fails at render, telling the developer to watch the model."""
    from django_hooks.watch import WatchError

    with pytest.raises(WatchError, match=r"BRIDGE\['MODELS'\]"):
        render('{% live "auth.User" %}x{% endlive %}', make_user("unwatched"))


# System checks ----------------------------------------------------------------------


def live_checks(**overrides: Any) -> list[Any]:
    from django.conf import settings

    from django_hooks.checks import check_live

    with override_settings(**{"MIDDLEWARE": settings.MIDDLEWARE, **overrides}):
        return [(m.id, m.hint) for m in check_live()]


def test_example_settings_pass_the_live_checks(django_db: str) -> None:
    """The example project (middleware first, request processor on) has nothing to fix."""
    assert live_checks() == []


def test_live_checks_name_each_misconfiguration(django_db: str) -> None:
    """A middleware that may query before it, the site cache: each is a warning naming the
    fix; without the middleware nothing is checked."""
    from django_hooks.checks import LIVE_MIDDLEWARE

    late = ["myapp.middleware.TenantMiddleware", LIVE_MIDDLEWARE]
    assert live_checks(MIDDLEWARE=late) == [
        ("django_hooks.W101", f"move {LIVE_MIDDLEWARE!r} to the top of MIDDLEWARE")]
    cached = [LIVE_MIDDLEWARE, "django.middleware.cache.FetchFromCacheMiddleware"]
    assert [i for i, _ in live_checks(MIDDLEWARE=cached)] == ["django_hooks.W102"]
    assert live_checks(MIDDLEWARE=["myapp.middleware.TenantMiddleware"]) == []
