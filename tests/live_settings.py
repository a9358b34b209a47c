"""example.settings with one more page: the region page that commits at a racy point."""

from __future__ import annotations

from example.settings import *  # noqa: F403

ROOT_URLCONF = "tests.live_urls"
