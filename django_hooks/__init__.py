"""Django side of pg-notify-bridge: settings, checks, tokens, triggers and bridge.js.

Add ``"django_hooks"`` to ``INSTALLED_APPS`` and a ``BRIDGE`` settings dict;
docs/django.md walks an existing project through it.
"""
