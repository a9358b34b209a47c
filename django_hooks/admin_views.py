"""The numbers behind the admin's "Bridge" page, read from the daemons' /metrics.

Not from the database: clients, subscriptions, event rate and lag live in the
daemons. `BRIDGE["METRICS_URLS"]` lists each daemon's metrics URL (its
--metrics-port, on loopback or a private network); the Django server fetches
them, so they never need to be reachable from a browser. Without it the page
reads the one daemon the same settings configure (runbridge, or
--django-settings), so it works out of the box. The page's script
polls `collect()`'s JSON every few seconds and draws the rates itself.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings

from bridge.metrics import scrape

from . import conf

FETCH_TIMEOUT = 2.0
"""Seconds one daemon may take to answer: a dead one must not stall the page."""

REFRESH_SECONDS = 3
"""How often the open page asks again."""


def metrics_urls() -> list[str]:
    """BRIDGE["METRICS_URLS"]: a list of URLs, or one URL; else the settings' own daemon."""
    urls = conf.get("METRICS_URLS") or []
    if not urls:
        return [own_metrics_url()]
    return [urls] if isinstance(urls, str) else [str(u) for u in urls]


def own_metrics_url() -> str:
    """/metrics of the daemon these settings configure: BRIDGE's METRICS_PORT (loopback,
    as the daemon binds it), or else its HOST and PORT, where it serves /metrics itself."""
    bridge = getattr(settings, "BRIDGE", None) or {}
    if bridge.get("METRICS_PORT"):
        return f"http://127.0.0.1:{int(bridge['METRICS_PORT'])}/metrics"
    host = str(bridge.get("HOST") or "127.0.0.1")
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"  # listening everywhere: loopback reaches it
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if bridge.get("TLS_CERT") else "http"
    return f"{scheme}://{host}:{int(conf.get('PORT'))}/metrics"


def collect(urls: list[str] | None = None) -> dict[str, Any]:
    """Every daemon's summary (or why it could not be read), and the totals."""
    urls = metrics_urls() if urls is None else urls
    with ThreadPoolExecutor(max_workers=max(1, min(len(urls), 8))) as pool:
        daemons = list(pool.map(_read, urls))
    up = [d for d in daemons if d["ok"]]
    channels: dict[str, float] = {}
    for daemon in up:
        for name, count in daemon["channels"].items():
            channels[name] = channels.get(name, 0) + count
    return {
        "time": time.time(),
        "daemons": daemons,
        "totals": {
            "daemons": len(daemons),
            "up": len(up),
            "ready": sum(1 for d in up if d["listener_up"]),
            "clients": sum(d["total_clients"] for d in up),
            "subscriptions": sum(d["total_subscriptions"] for d in up),
            "events_read": sum(d["events_read"] for d in up),
            "lag_sum": sum(d["lag_sum"] for d in up),
            "lag_count": sum(d["lag_count"] for d in up),
            "channels": dict(sorted(channels.items())),
        },
    }


def _read(url: str) -> dict[str, Any]:
    try:
        summary = scrape(url, timeout=FETCH_TIMEOUT)
    except (OSError, ValueError) as exc:
        return {"url": url, "ok": False, "error": " ".join(str(exc).split())[:200]}
    return {"url": url, "ok": True, **summary.as_dict()}
