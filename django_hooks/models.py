"""No tables: one unmanaged model, so the admin lists a "Bridge" page (django_hooks/admin.py).

The Django admin shows registered models; the bridge has no rows to show,
only live numbers read from the daemons. An unmanaged model without fields
gives the page its place in the admin index, its URL and its permission
(`django_hooks.view_bridge`), and creates nothing in the database.
"""

from __future__ import annotations

from django.db import models


class Bridge(models.Model):
    """The admin's entry point to the daemons' numbers (never queried)."""

    class Meta:
        managed = False
        default_permissions = ("view",)
        verbose_name = "Bridge"
        verbose_name_plural = "Bridge"
