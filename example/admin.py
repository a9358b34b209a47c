from django.contrib import admin

from .models import Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ("title", "done", "owner", "updated_at")
    list_editable = ("done",)
    list_filter = ("done", "owner")
