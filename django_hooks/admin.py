"""The admin's "Bridge" page: live numbers from the daemons, refreshed while it is open.

Registered on the default admin site for the unmanaged Bridge model, so it
appears in the admin index under pg-notify-bridge for users with
`django_hooks.view_bridge` (superusers always). Nothing can be added, changed
or deleted: the changelist is the dashboard, and `metrics.json` beside it
feeds the chart (django_hooks/static/django_hooks/bridge_admin.js).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from . import admin_views, conf
from .models import Bridge


@admin.register(Bridge)
class BridgeAdmin(admin.ModelAdmin):
    """Read-only: a dashboard, not a list of rows."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        own = [path("metrics.json", self.admin_site.admin_view(self.metrics_json),
                    name="{}_{}_metrics".format(*info))]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest,
                        extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        info = self.opts.app_label, self.opts.model_name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Bridge",
            "subtitle": None,
            "metrics_json": reverse("admin:{}_{}_metrics".format(*info),
                                    current_app=self.admin_site.name),
            "refresh_seconds": admin_views.REFRESH_SECONDS,
            "urls": admin_views.metrics_urls(),
            "own_daemon": not conf.get("METRICS_URLS"),
            "initial": admin_views.collect(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "django_hooks/admin_bridge.html", context)

    def metrics_json(self, request: HttpRequest) -> JsonResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        response = JsonResponse(admin_views.collect())
        add_never_cache_headers(response)
        return response
