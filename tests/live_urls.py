"""The example's URLs plus /racy/<point>/: the region page, with a commit at a racy point.

`?title=` is written to the user's first task by another connection (as any
other writer would), at the point named: `position` (before the render
position is read: the view's first statement), `queries` (after the position
was read, before the page's own queries). The page is the example's region
page, so the browser then shows what the exact handoff makes of it.
"""

from __future__ import annotations

import os

import psycopg
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import engines
from django.urls import path

from django_hooks import positions
from example.models import Task
from example.urls import urlpatterns as example_urlpatterns


def commit(request: HttpRequest) -> None:
    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        conn.execute("UPDATE example_task SET title = %s WHERE id ="
                     " (SELECT min(id) FROM example_task WHERE owner_id = %s)",
                     (request.GET["title"], request.GET["owner"]))


def racy(request: HttpRequest, point: str) -> HttpResponse:
    """`?owner=` rather than request.user: loading the user is a query, which would read
    the position before the `position` point could commit."""
    capture = positions.for_request(request)
    if capture is not None:  # the page load; bridge.js's refetches get the page alone
        assert capture.value is None  # nothing has queried yet
        if point == "position":
            commit(request)
        capture.get()
        if point == "queries":
            commit(request)
    tasks = list(Task.objects.filter(owner_id=request.GET["owner"]))
    return render(request, "example/region.html", {"tasks": tasks})


ROWS_PAGE = """{% extends "example/base.html" %}{% load bridge %}{% block content %}
<p id="intro">rows from a partial view</p>
<table><thead><tr><th>#</th><th>Title</th><th>Done</th><th>Note</th></tr></thead>
{% live "example.Task" src="/task-rows" tag="tbody" id="tasks" %}
{% include "example/task_rows.html" %}{% endlive %}
</table>{% endblock %}"""


@login_required
def partial_region(request: HttpRequest) -> HttpResponse:
    """A table body as a region whose src is the example's partial view of rows."""
    page = engines["django"].from_string(ROWS_PAGE)
    return HttpResponse(page.render({"tasks": Task.objects.filter(owner=request.user)},
                                    request))


def reads_position(request: HttpRequest) -> HttpResponse:
    """Whether LiveRenderMiddleware read a render position for this request."""
    return HttpResponse("yes" if positions.for_request(request) is not None else "no")


urlpatterns = [path("racy/<str:point>/", racy), path("partial-region/", partial_region),
               path("reads-position/", reads_position), *example_urlpatterns]
