"""docs/django.md's five steps, followed on a fresh `django-admin startproject`, in Chromium."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg

from example.settings import database_from_url
from tests.django_site import child_env, free_port, stop_process, wait_http
from tests.timing import scaled

# The project as it was before: a notes app whose page polls a JSON view.
NOTES_MODELS = '''
from django.conf import settings
from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=200)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
'''
NOTES_VIEWS = '''
from django.http import JsonResponse
from django.shortcuts import render

from .models import Note


def page(request):
    return render(request, "notes/page.html")


def note_list(request):
    notes = Note.objects.filter(owner=request.user).order_by("id")
    return JsonResponse({"notes": [n.text for n in notes]})
'''
PAGE_BEFORE = '''<ul id="notes"></ul>
<script>
function load() {
  return fetch("/notes/list").then(r => r.json()).then(data => {
    document.getElementById("notes").innerHTML =
      data.notes.map(t => "<li>" + t + "</li>").join("");
  });
}
setInterval(load, 1000);
load();
</script>
'''
URLS_BEFORE = '''
from notes import views as notes_views
urlpatterns += [
    path("notes/", notes_views.page),
    path("notes/list", notes_views.note_list),
]
'''

# docs/django.md, steps 1 and 2 (settings) and step 1 (urls), as a user pastes them.
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
    "MODELS": {{"notes.Note": {{"channel_column": "owner"}}}},
    "PORT": {port},
    "TOKEN_MAX_AGE": "1h",
}}
'''
# Step 4: the polling loop gives way to the tag.
PAGE_AFTER = '''{% load bridge %}<ul id="notes"></ul>
{% bridge_client "notes_note" %}
<script>
function load() {
  return fetch("/notes/list").then(r => r.json()).then(data => {
    document.getElementById("notes").innerHTML =
      data.notes.map(t => "<li>" + t + "</li>").join("");
  });
}
var bridge = PgBridge.client;
bridge.refetchOn("notes_note", load, {minInterval: 1000});
bridge.onState(state => document.body.dataset.bridge = state);
load();
</script>
'''


def manage(project: Path, env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=project, env=env,
                            check=True, capture_output=True, text=True, timeout=scaled(120))
    return result.stdout + result.stderr


def make_project(root: Path, db_url: str, env: dict[str, str]) -> Path:
    """An existing project: startproject, a notes app with a polling page, PostgreSQL."""
    root.mkdir()
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)],
                   check=True, env=env)
    subprocess.run([sys.executable, "manage.py", "startapp", "notes"], cwd=root, check=True,
                   env=env)
    (root / "notes" / "models.py").write_text(NOTES_MODELS)
    (root / "notes" / "views.py").write_text(NOTES_VIEWS)
    (root / "notes" / "templates" / "notes").mkdir(parents=True)
    (root / "notes" / "templates" / "notes" / "page.html").write_text(PAGE_BEFORE)
    settings = root / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + '\nINSTALLED_APPS += ["notes"]\n'
        + f"DATABASES = {{'default': {database_from_url(db_url)!r}}}\n"
    )
    urls = root / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + URLS_BEFORE)
    manage(root, env, "makemigrations", "notes")
    manage(root, env, "migrate")
    return root


def test_five_steps_on_a_fresh_startproject(tmp_path: Path, db_url: str, chromium: Any) -> None:
    """Add the app, watch a model, install triggers, render the tag: a psql change shows."""
    env = child_env(DJANGO_SUPERUSER_PASSWORD="ann-pw")
    project = make_project(tmp_path / "mysite", db_url, env)
    bridge_port, http_port = free_port(), free_port()
    settings = project / "mysite" / "settings.py"

    # 1. Add the app.  2. Watch a model.
    settings.write_text(settings.read_text() + STEP_1_SETTINGS
                        + STEP_2_SETTINGS.format(port=bridge_port))
    urls = project / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + STEP_1_URLS)
    assert "django_hooks.W001" in manage(project, env, "check")
    # 3. Install the triggers.
    assert "Installed triggers on notes_note" in manage(project, env, "bridge_install_triggers")
    assert "no issues" in manage(project, env, "check")
    # 4. Render the tag.
    (project / "notes" / "templates" / "notes" / "page.html").write_text(PAGE_AFTER)
    manage(project, env, "createsuperuser", "--noinput", "--username", "ann",
           "--email", "ann@example.org")
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("INSERT INTO notes_note (text, owner_id)"
                     " SELECT 'first note', id FROM auth_user WHERE username = 'ann'")

    # 5. Run the bridge (manage.py runbridge) and the site.
    runbridge = subprocess.Popen(
        [sys.executable, "manage.py", "runbridge", "--port", str(bridge_port)],
        cwd=project, env=env, start_new_session=True,
    )
    django = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{http_port}"],
        cwd=project, env=env, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    context = chromium.new_context()
    try:
        base = f"http://127.0.0.1:{http_port}"
        wait_http(f"http://127.0.0.1:{bridge_port}/readyz", runbridge)
        wait_http(base + "/admin/login/", django)
        page = context.new_page()
        requests: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{base}/admin/login/?next=/notes/")
        page.fill("#id_username", "ann")
        page.fill("#id_password", "ann-pw")
        page.click("input[type=submit]")
        page.wait_for_url(base + "/notes/")
        deadline = scaled(30) * 1000
        page.wait_for_selector("body[data-bridge=live]", timeout=deadline)
        page.wait_for_function("document.getElementById('notes').innerText.includes('first')",
                               timeout=deadline)
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute("UPDATE notes_note SET text = 'pushed, not polled'")
        page.wait_for_function(
            "document.getElementById('notes').innerText.includes('pushed, not polled')",
            timeout=deadline)
        assert any(url.endswith("/static/django_hooks/bridge.js") for url in requests)
    finally:
        context.close()
        stop_process(django)
        stop_process(runbridge)
