"""``path("bridge/", include("django_hooks.urls"))`` mounts the token view."""

from django.urls import path

from . import views

app_name = "django_hooks"

urlpatterns = [path("token", views.token, name="token")]
