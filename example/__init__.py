"""The demo Django project: a task list that updates itself through pg-notify-bridge.

It is both the project (settings, urls) and its one app (label ``example``),
so the Task model's table is ``example_task``. ``python -m example <command>``
is its manage.py; ``python -m example.demo`` (``make demo``) runs everything.
"""
