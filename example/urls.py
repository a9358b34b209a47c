from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home),
    path("tasks/", views.tasks, name="tasks"),
    path("live/", views.live, name="live"),
    path("region/", views.region, name="region"),
    path("htmx/", views.htmx_page, name="htmx"),
    path("task-rows", views.task_rows, name="task-rows"),
    path("task-list", views.task_list, name="task-list"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("bridge/", include("django_hooks.urls")),
    path("admin/", admin.site.urls),
]
