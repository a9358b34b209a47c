"""The task pages and /task-list, the JSON endpoint both pages refetch.

Each user sees their own tasks: the token of a user covers only the channel
of their rows (example_task:owner_id=<id>), so the pages refetch only when
one of those changed.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render

from .models import Task


def task_list(request: HttpRequest) -> JsonResponse:
    """The user's tasks as JSON: what the original design's pages fetched every second."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "log in first"}, status=401)
    tasks = Task.objects.filter(owner=request.user)
    return JsonResponse({"tasks": [task.as_json() for task in tasks]})


@login_required
def tasks(request: HttpRequest) -> HttpResponse:
    """The page whose script is the original design's snippet, unchanged in substance."""
    return render(request, "example/tasks.html")


@login_required
def live(request: HttpRequest) -> HttpResponse:
    """The same list on bridge.js: resumes after a drop and shows live/offline."""
    return render(request, "example/live.html")


@login_required
def region(request: HttpRequest) -> HttpResponse:
    """A live region: the rows rendered by Django, kept current by {% live %} alone."""
    return render(request, "example/region.html",
                  {"tasks": Task.objects.filter(owner=request.user)})


@login_required
def htmx_page(request: HttpRequest) -> HttpResponse:
    """The same rows on htmx: hx-get refetches task_rows on bridge:change."""
    return render(request, "example/htmx.html",
                  {"tasks": Task.objects.filter(owner=request.user)})


@login_required
def task_rows(request: HttpRequest) -> HttpResponse:
    """The rows alone: the partial view htmx (or {% live src=... %}) refetches."""
    return render(request, "example/task_rows.html",
                  {"tasks": Task.objects.filter(owner=request.user)})


def home(request: HttpRequest) -> HttpResponse:
    return redirect("tasks")
