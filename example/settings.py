"""Settings of the demo project: DATABASE_URL for the database; the key from the environment
or this checkout's generated .demo_secret_key (example/secretkey.py).

Importable without Django being set up: the bridge daemon reads SECRET_KEY and
BRIDGE from this module (``python -m bridge --django-settings example.settings``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from example import secretkey

BASE_DIR = Path(__file__).resolve().parent

# No key ships with the example (a published key lets anyone forge tokens): the
# environment's, else this checkout's own random key in .demo_secret_key (secretkey.py).
SECRET_KEY = (
    os.environ.get("DJANGO_SECRET_KEY")
    or os.environ.get("BRIDGE_SECRET_KEY")
    or secretkey.ensure()
)
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]


def database_from_url(url: str) -> dict[str, Any]:
    """A DATABASES entry from a libpq URL or DSN (psycopg parses it: no extra dependency)."""
    params: dict[str, Any] = conninfo_to_dict(url)
    entry: dict[str, Any] = {"ENGINE": "django.db.backends.postgresql"}
    for key, name in (("dbname", "NAME"), ("user", "USER"), ("password", "PASSWORD"),
                      ("host", "HOST"), ("port", "PORT")):
        value = params.pop(key, None)
        entry[name] = "" if value is None else str(value)
    entry["OPTIONS"] = params
    return entry


DATABASES = {"default": database_from_url(os.environ.get("DATABASE_URL", "dbname=example"))}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_hooks",
    "example",
]

MIDDLEWARE = [
    # First: reads the render position before any query (live regions; docs/django.md).
    "django_hooks.positions.LiveRenderMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_hooks.middleware.BridgeCookieMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "example.urls"
WSGI_APPLICATION = "example.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django_hooks.context_processors.websocket",
            ],
        },
    },
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "tasks"
LOGOUT_REDIRECT_URL = "login"

# One dict for both sides: Django reads MODELS, PORT, TOKEN_MAX_AGE, METRICS_URLS; the
# daemon (--django-settings example.settings) reads PORT, TOKEN_MAX_AGE and its other flags.
_BRIDGE_PORT = int(os.environ.get("BRIDGE_PORT", "8765"))
BRIDGE = {
    "MODELS": {"example.Task": {"channel_column": "owner_id"}},
    "PORT": _BRIDGE_PORT,
    "TOKEN_MAX_AGE": "1h",
    # The host names the daemon answers to (DNS-rebinding defence): this site's own.
    # Without the key the daemon would read ALLOWED_HOSTS anyway; the demo says it.
    "ALLOWED_HOSTS": ALLOWED_HOSTS,
    # The demo daemon has no --metrics-port, so it serves /metrics on its own port;
    # the admin's "Bridge" page (/admin/django_hooks/bridge/) reads it from here.
    "METRICS_URLS": [f"http://127.0.0.1:{_BRIDGE_PORT}/metrics"],
}
