"""docs/django.md followed on a fresh `startproject`, in a fresh venv with the built wheel.

The project is a newcomer's: `django-admin startproject shop`, an `orders`
app whose page polls a JSON view, then the docs' five steps pasted as
written. It runs from a virtualenv that has only the wheel `make dist`
builds (tests/fix_wheel.py), outside this checkout, so a file missing from
the package or a step the docs leave out fails here. Chromium then checks
what a user would: each user sees only their own orders, changes from psql,
the ORM and the admin show at once, the page comes back after the daemon
restarts, and a page written for the original design keeps working.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from example.settings import database_from_url
from tests.django_site import free_port, stop_process, wait_http
from tests.fix_wheel import WheelVenv
from tests.timing import scaled

DEADLINE_MS = scaled(30) * 1000

# The project as it was before: an orders app whose page polls a JSON view.
ORDERS_MODELS = '''
from django.conf import settings
from django.db import models


class Order(models.Model):
    item = models.CharField(max_length=200)
    customer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)

    def __str__(self):
        return self.item
'''
ORDERS_ADMIN = '''
from django.contrib import admin

from .models import Order

admin.site.register(Order)
'''
ORDERS_VIEWS = '''
from django.http import JsonResponse
from django.shortcuts import render

from .models import Order


def page(request):
    return render(request, "orders/page.html")


def legacy(request):
    return render(request, "orders/legacy.html")


def order_list(request):
    orders = Order.objects.filter(customer=request.user).order_by("id")
    return JsonResponse({"orders": [o.item for o in orders]})
'''
PAGE_BEFORE = '''<ul id="orders"></ul>
<script>
function load() {
  return fetch("/orders/list").then(r => r.json()).then(data => {
    document.getElementById("orders").innerHTML =
      data.orders.map(t => "<li>" + t + "</li>").join("");
  });
}
setInterval(load, 1000);
load();
</script>
'''
URLS_BEFORE = '''
from orders import views as orders_views
urlpatterns += [
    path("orders/", orders_views.page),
    path("orders/legacy/", orders_views.legacy),
    path("orders/list", orders_views.order_list),
]
'''

# docs/django.md, step 1 (settings and urls) and step 2, as a user pastes them.
STEP_1_SETTINGS = '''
INSTALLED_APPS += ["django_hooks"]
MIDDLEWARE.insert(
    MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1,
    "django_hooks.middleware.BridgeCookieMiddleware",
)
TEMPLATES[0]["OPTIONS"]["context_processors"] += [
    "django_hooks.context_processors.websocket",
]
'''
STEP_1_URLS = '''
from django.urls import include
urlpatterns += [path("bridge/", include("django_hooks.urls"))]
'''
STEP_2_SETTINGS = '''
BRIDGE = {{
    "MODELS": {{"orders.Order": {{"channel_column": "customer"}}}},
    "PORT": {port},
    "TOKEN_MAX_AGE": "1h",
}}
'''
# Step 4: the polling loop gives way to the tag, here in <head> (document.body does not
# exist yet when it runs). Every event's channel is recorded, to prove what never came.
PAGE_AFTER = '''{% load bridge %}<!doctype html>
<html><head>
{% bridge_client "orders_order" %}
<script>
  function load() {
    return fetch("/orders/list").then(r => r.json()).then(data => {
      document.getElementById("orders").innerHTML =
        data.orders.map(t => "<li>" + t + "</li>").join("");
    });
  }
  var bridge = PgBridge.client;
  bridge.refetchOn("orders_order", load, {minInterval: 1000, burst: 3});
  bridge.onState(state => document.body.dataset.bridge = state);
  PgBridge.whenParsed(load);
  window.seen = [];
  bridge.on("orders_order", frame => seen.push(frame.channel + " " + frame.pks.join(",")));
</script>
</head><body><ul id="orders"></ul></body></html>
'''
# docs/django.md, "Pages written for the original design", unchanged but for the
# fetch that stands in for jQuery's $.getJSON (a new project has no jQuery).
LEGACY_PAGE = '''<ul id="orders"></ul>
<script>
var ws = new WebSocket("ws{{ websocket_secure | yesno:'s,' }}://" + \
window.location.hostname + ":{{ websocket_port }}/");
ws.onmessage = function (event) {
  var type = event.data;
  if (type == 'updated') {
    fetch('/orders/list').then(r => r.json()).then(function (data) {
      document.getElementById("orders").innerHTML =
        data.orders.map(t => "<li>" + t + "</li>").join("");
    });
  }
};
</script>
'''


@dataclass
class Project:
    """The user's project on disk, and the wheel venv's Python to run it with."""

    root: Path
    venv: WheelVenv
    db_url: str

    def manage(self, *args: str) -> str:
        result = self.venv.run("manage.py", *args, cwd=self.root, check=False,
                               DJANGO_SUPERUSER_PASSWORD="pw-" + "x" * 12)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout + result.stderr

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen([str(self.venv.python), "manage.py", *args], cwd=self.root,
                                env=self.venv.env, start_new_session=True,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def psql(self, statement: str) -> None:
        """Run a statement with psql itself (the embedded server's), as a DBA would."""
        from example.devdb import POSTGRES_BIN_PATH

        subprocess.run([str(POSTGRES_BIN_PATH / "psql"), "-X", "-v", "ON_ERROR_STOP=1",
                        "-d", self.db_url, "-c", statement], check=True, capture_output=True,
                       timeout=scaled(60))


def write(path: Path, text: str, append: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text((path.read_text() if append else "") + text)


def make_project(tmp_path: Path, venv: WheelVenv, db_url: str) -> Project:
    """An existing project: startproject shop, an orders app with a polling page, PostgreSQL."""
    root = tmp_path / "shop"
    root.mkdir()
    venv.run("-m", "django", "startproject", "shop", str(root), cwd=root)
    project = Project(root, venv, db_url)
    project.manage("startapp", "orders")
    write(root / "orders" / "models.py", ORDERS_MODELS)
    write(root / "orders" / "admin.py", ORDERS_ADMIN)
    write(root / "orders" / "views.py", ORDERS_VIEWS)
    write(root / "orders" / "templates" / "orders" / "page.html", PAGE_BEFORE)
    write(root / "shop" / "settings.py", '\nINSTALLED_APPS += ["orders"]\n'
          f"DATABASES = {{'default': {database_from_url(db_url)!r}}}\n", append=True)
    write(root / "shop" / "urls.py", URLS_BEFORE, append=True)
    project.manage("makemigrations", "orders")
    project.manage("migrate")
    return project


@pytest.fixture
def shop(tmp_path: Path, wheel_venv: WheelVenv, db_url: str) -> Project:
    """The shop project with docs/django.md's steps 1 to 4 applied, users ann (superuser)
    and bob, one order each."""
    project = make_project(tmp_path, wheel_venv, db_url)
    settings, urls = project.root / "shop" / "settings.py", project.root / "shop" / "urls.py"
    # 1. Add the app.  2. Watch a model.
    write(settings, STEP_1_SETTINGS + STEP_2_SETTINGS.format(port=free_port()), append=True)
    write(urls, STEP_1_URLS, append=True)
    assert "django_hooks.W001" in project.manage("check")
    # 3. Install the triggers: migrate says what it did.
    assert ("Installed bridge triggers on orders_order (orders.Order): channel orders_order,"
            " rows also to orders_order:customer_id=<value>") in project.manage("migrate")
    assert "no issues" in project.manage("check")
    # 4. Render the tag (and keep a page of the original design).
    write(project.root / "orders" / "templates" / "orders" / "page.html", PAGE_AFTER)
    write(project.root / "orders" / "templates" / "orders" / "legacy.html", LEGACY_PAGE)
    project.manage("createsuperuser", "--noinput", "--username", "ann",
                   "--email", "ann@example.org")
    project.manage("shell", "-c", "from django.contrib.auth.models import User;"
                   " User.objects.create_user('bob', password='pw-' + 'x' * 12, is_staff=True)")
    project.psql("INSERT INTO orders_order (item, customer_id) SELECT u.username || ' first',"
                 " u.id FROM auth_user u")
    return project


@dataclass
class Running:
    base: str
    bridge_port: int
    runbridge: subprocess.Popen[bytes]
    django: subprocess.Popen[bytes]


@pytest.fixture
def running(shop: Project) -> Iterator[Running]:
    """Step 5: `manage.py runbridge` beside `manage.py runserver`, as the docs say."""
    settings = (shop.root / "shop" / "settings.py").read_text()
    bridge_port = int(settings.split('"PORT": ')[1].split(",")[0])
    http_port = free_port()
    running = Running(f"http://127.0.0.1:{http_port}", bridge_port, shop.spawn("runbridge"),
                      shop.spawn("runserver", "--noreload", f"127.0.0.1:{http_port}"))
    try:
        wait_http(f"http://127.0.0.1:{bridge_port}/readyz", running.runbridge)
        wait_http(running.base + "/admin/login/", running.django)
        yield running
    finally:
        stop_process(running.django)
        stop_process(running.runbridge)


def log_in(context: Any, base: str, username: str, next_url: str) -> Any:
    page = context.new_page()
    page.goto(f"{base}/admin/login/?next={next_url}")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw-" + "x" * 12)
    page.click("input[type=submit]")
    page.wait_for_url(base + next_url)
    return page


def shows(page: Any, text: str) -> None:
    page.wait_for_function(f"document.getElementById('orders').innerText.includes({text!r})",
                           timeout=DEADLINE_MS)


def test_docs_on_a_fresh_startproject_from_the_wheel(
    shop: Project, running: Running, chromium: Any
) -> None:
    """Per-user pages update from psql, the ORM and the admin, survive a daemon restart, the
    original snippet works and collectstatic finds bridge.js, from the wheel alone."""
    ann_context, bob_context = chromium.new_context(), chromium.new_context()
    try:
        ann = log_in(ann_context, running.base, "ann", "/orders/")
        requests: list[str] = []
        ann.on("request", lambda r: requests.append(r.url))
        errors: list[str] = []
        ann.on("pageerror", lambda e: errors.append(str(e)))
        ann.reload()
        ann.wait_for_selector("html body[data-bridge=live]", timeout=DEADLINE_MS)
        shows(ann, "ann first")
        bob = log_in(bob_context, running.base, "bob", "/orders/")
        bob.wait_for_selector("body[data-bridge=live]", timeout=DEADLINE_MS)
        shows(bob, "bob first")
        assert "ann" not in bob.inner_text("#orders")

        # psql: bob's change first, then ann's. Events come in commit order, so once
        # ann's has arrived, bob's would have too had it been sent to her.
        shop.psql("UPDATE orders_order SET item = 'bob via psql'"
                  " WHERE customer_id = (SELECT id FROM auth_user WHERE username = 'bob')")
        shop.psql("UPDATE orders_order SET item = 'ann via psql'"
                  " WHERE customer_id = (SELECT id FROM auth_user WHERE username = 'ann')")
        shows(ann, "ann via psql")
        shows(bob, "bob via psql")
        ann_id = shop.manage("shell", "-c", "from django.contrib.auth.models import User;"
                             " print(User.objects.get(username='ann').pk)").split()[-1]
        assert len(ann.evaluate("seen")) >= 1
        assert all(entry.startswith(f"orders_order:customer_id={ann_id} ")
                   for entry in ann.evaluate("seen")), (ann_id, ann.evaluate("seen"))

        # The ORM, from manage.py shell.
        shop.manage("shell", "-c", "from orders.models import Order;"
                    " Order.objects.filter(customer__username='ann').update(item='ann via orm')")
        shows(ann, "ann via orm")

        # The admin, in another tab of ann's.
        admin = ann_context.new_page()
        admin.goto(running.base + "/admin/orders/order/")
        admin.click("text=ann via orm")
        admin.fill("#id_item", "ann via admin")
        admin.click("input[name=_save]")
        admin.wait_for_url(running.base + "/admin/orders/order/")
        shows(ann, "ann via admin")

        # The admin's Bridge page reads this daemon with no METRICS_URLS set.
        stats = admin.request.get(running.base + "/admin/django_hooks/bridge/metrics.json")
        (daemon,) = stats.json()["daemons"]
        assert daemon["ok"] and daemon["listener_up"] and daemon["total_clients"] >= 2

        # A page of the original design gets `updated` for ann's rows.
        legacy = ann_context.new_page()
        legacy.goto(running.base + "/orders/legacy/")
        legacy.wait_for_function("ws.readyState === 1", timeout=DEADLINE_MS)
        shop.psql("UPDATE orders_order SET item = 'ann for the old page' WHERE item LIKE 'ann%'")
        shows(legacy, "ann for the old page")
        shows(ann, "ann for the old page")

        # The daemon restarts; a change made while it was down shows once it is back.
        stop_process(running.runbridge)
        ann.wait_for_selector("body[data-bridge=offline]", timeout=DEADLINE_MS)
        shop.psql("UPDATE orders_order SET item = 'ann while down' WHERE item LIKE 'ann%'")
        running.runbridge = shop.spawn("runbridge")
        wait_http(f"http://127.0.0.1:{running.bridge_port}/readyz", running.runbridge)
        ann.wait_for_selector("body[data-bridge=live]", timeout=DEADLINE_MS)
        shows(ann, "ann while down")
        shop.psql("UPDATE orders_order SET item = 'ann after restart' WHERE item LIKE 'ann%'")
        shows(ann, "ann after restart")

        assert any(url.endswith("/static/django_hooks/bridge.js") for url in requests)
        assert errors == []
    finally:
        ann_context.close()
        bob_context.close()
    # Production serves bridge.js from STATIC_ROOT: collectstatic finds it in the wheel.
    write(shop.root / "shop" / "settings.py", 'STATIC_ROOT = BASE_DIR / "static"\n', append=True)
    shop.manage("collectstatic", "--noinput")
    assert "PgBridge" in (shop.root / "static" / "django_hooks" / "bridge.js").read_text()

