"""``python -m example <command>``: the example project's manage.py."""

import os
import sys

from django.core.management import execute_from_command_line


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")
    execute_from_command_line([f"{sys.executable} -m example", *sys.argv[1:]])


if __name__ == "__main__":
    main()
