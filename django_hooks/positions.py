"""The render position: where in the event log a page was rendered, read before its queries.

A live region (``{% live %}``) carries this position so bridge.js can
subscribe with ``since`` and the daemon replays exactly what the render could
not see (docs/guarantees.md, "Live regions: exact handoff"). The argument
needs the position to be read *before* the queries that fill the page, so
`LiveRenderMiddleware` installs an execute wrapper on the database connection
that reads it right before the request's first query; a page that runs no
query before its first ``{% live %}`` reads it there. Reading it in the tag
after the view had queried would be too late: a change committed between
those queries and the read would be skipped forever.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, ProgrammingError, connections
from django.http import HttpRequest, HttpResponse

from bridge.errors import NoSchemaError
from bridge.positions import Positions

from . import conf

# One statement, so one snapshot: the newest stamped row, or (pruned_through, 0) when the
# log is empty. The same head the daemon gives out (bridge.log.head()), in one round trip.
HEAD_SQL = """
SELECT (SELECT value FROM bridge.meta WHERE key = 'db_id'), h.tick, h.id,
       (SELECT value::bigint FROM bridge.meta WHERE key = 'pruned_through')
  FROM (SELECT 1) one
  LEFT JOIN LATERAL (SELECT tick, id FROM bridge.log WHERE tick IS NOT NULL
                      ORDER BY tick DESC, id DESC LIMIT 1) h ON true
"""

SCHEMA_FIX = ("run `python manage.py migrate` (it installs the schema with the triggers,"
              " BRIDGE['INSTALL_ON_MIGRATE']) or `python manage.py bridge_install_triggers`")

REFRESH_HEADER = "X-Bridge-Live"
"""Sent by bridge.js when it refetches a region: such a response needs no position."""

SKIPPED = "skipped"
"""`request.bridge_render` when the middleware left a request alone on purpose (wants_position)."""


def wants_position(request: HttpRequest) -> bool:
    """Whether a request may render a page whose regions need a render position.

    Only GET and HEAD render pages. A script's data request does not: fetch()
    says so with `Sec-Fetch-Dest: empty` (every current browser sends it),
    jQuery's ajax with `X-Requested-With: XMLHttpRequest`. Those are the
    refetches of `refetchOn()` and of the original snippet, one per tab and
    change, and skipping them keeps each refetch at what a poll costs the
    database. htmx requests (`HX-Request`) keep their position: hx-boost swaps
    in whole pages. A region rendered by a skipped request still shows every
    change: without a position bridge.js refetches it once on load.
    """
    if request.method not in ("GET", "HEAD"):
        return False
    headers = request.headers
    if REFRESH_HEADER in headers:
        return False
    if headers.get("X-Requested-With") == "XMLHttpRequest":
        return False
    return headers.get("Sec-Fetch-Dest") != "empty" or "HX-Request" in headers


def read(using: str = DEFAULT_DB_ALIAS) -> str:
    """The log's head as the opaque position string a daemon would give out: encoded with
    the key the daemon derives from the same secret (bridge/positions.py), so any daemon
    sharing the secret resumes from it."""
    try:
        with connections[using].cursor() as cursor:
            cursor.execute(HEAD_SQL)
            row = cursor.fetchone()
    except ProgrammingError as exc:  # undefined table: the schema is not there
        raise NoSchemaError(SCHEMA_FIX) from exc
    if row is None or row[0] is None:
        raise NoSchemaError(SCHEMA_FIX)
    db_id, tick, row_id, pruned = row
    head = (tick, row_id) if tick is not None else (int(pruned or 0), 0)
    return _codec(conf.secret_key(), tuple(conf.fallback_keys())).encode(db_id, head)


@functools.lru_cache(maxsize=4)
def _codec(secret: str, fallbacks: tuple[str, ...]) -> Positions:
    """One Positions per set of keys: deriving them (three HMACs a key) is not per request."""
    return Positions([secret, *fallbacks])


class RenderPosition:
    """One request's render position: read once, before the request's first query."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        self.using = using
        self.value: str | None = None
        self._reading = False

    def __call__(self, execute: Callable[..., Any], sql: str, params: Any, many: bool,
                 context: dict[str, Any]) -> Any:
        """The execute wrapper: read the position first, then run the query."""
        if self.value is None and not self._reading:
            self.get()
        return execute(sql, params, many, context)

    def get(self) -> str:
        """The position, reading it now when no query has run yet."""
        if self.value is None:
            self._reading = True
            try:
                self.value = read(self.using)
            finally:
                self._reading = False
        return self.value


def for_request(request: Any) -> RenderPosition | None:
    """The request's RenderPosition, or None without LiveRenderMiddleware (or on a refetch)."""
    capture = getattr(request, "bridge_render", None)
    return capture if isinstance(capture, RenderPosition) else None


class LiveRenderMiddleware:
    """Reads the render position before a page's first query (GET and HEAD only).

    Put it first in MIDDLEWARE, or at least before anything that queries the
    database: a position read after a query would let a change slip through.
    Requests that write (POST, ...), bridge.js's own refetches and scripts'
    data requests skip it (`wants_position`).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not wants_position(request):
            request.bridge_render = SKIPPED
            return self.get_response(request)
        capture = RenderPosition()
        request.bridge_render = capture
        with connections[capture.using].execute_wrapper(capture):
            return self.get_response(request)
