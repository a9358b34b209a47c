"""`make dist`: the sdist and the wheel hold the app and nothing else, and the wheel runs."""

from __future__ import annotations

import re
import tarfile
import zipfile

from tests.django_site import REPO
from tests.fix_wheel import Dist, WheelVenv

# What a pip user needs: the daemon and its SQL, the Django app with its static
# files, templates, commands and template tag.
REQUIRED = (
    "bridge/__main__.py",
    "bridge/server.py",
    "bridge/sql/schema.sql",
    "django_hooks/apps.py",
    "django_hooks/checks.py",
    "django_hooks/static/django_hooks/bridge.js",
    "django_hooks/static/django_hooks/bridge_admin.js",
    "django_hooks/static/django_hooks/idiomorph-0.8.0.min.js",
    "django_hooks/positions.py",
    "django_hooks/templates/django_hooks/admin_bridge.html",
    "django_hooks/templatetags/bridge.py",
    "django_hooks/management/commands/runbridge.py",
    "django_hooks/management/commands/bridge_install_triggers.py",
    "django_hooks/management/commands/bridge_devdb.py",
)
FORBIDDEN_TOP = ("tests/", "example/", "bench/", ".ci/", ".venv/", ".pgdata/")
# The key `make demo` generates for a checkout (example/secretkey.py), wherever it lands.
FORBIDDEN_NAMES = (".demo_secret_key",)
# A Python file that hard-codes a key: the demo's settings, say.
KEY_ASSIGNMENT = re.compile(rb"^\s*SECRET_KEY\s*=", re.M)


def wheel_members(dist: Dist) -> dict[str, bytes]:
    with zipfile.ZipFile(dist.wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def sdist_members(dist: Dist) -> dict[str, bytes]:
    """The sdist's files, without the leading pg_notify_bridge-<version>/ directory."""
    members: dict[str, bytes] = {}
    with tarfile.open(dist.sdist) as archive:
        for info in archive.getmembers():
            if info.isfile():
                handle = archive.extractfile(info)
                assert handle is not None
                members[info.name.split("/", 1)[1]] = handle.read()
    return members


def problems(members: dict[str, bytes]) -> list[str]:
    """Required files missing, and files that must not ship."""
    found = [f"missing {name}" for name in REQUIRED if name not in members]
    found += [f"ships {name}" for name in members if name.startswith(FORBIDDEN_TOP)
              or name.rsplit("/", 1)[-1] in FORBIDDEN_NAMES]
    found += [f"{name} assigns SECRET_KEY" for name, data in members.items()
              if name.endswith(".py") and KEY_ASSIGNMENT.search(data)]
    return found


def test_wheel_holds_the_app_and_no_tests_or_demo(built_dist: Dist) -> None:
    """The wheel has bridge/ with its SQL and django_hooks/ with static files and templates,
    and no tests, demo project or hard-coded key."""
    members = wheel_members(built_dist)
    assert problems(members) == []
    assert members["bridge/sql/schema.sql"] == (REPO / "sql" / "schema.sql").read_bytes()


def test_sdist_holds_the_app_docs_and_deploy_files_but_no_tests(built_dist: Dist) -> None:
    """The sdist adds the docs, sql/ and deploy/ to the packages, and leaves out the tests."""
    members = sdist_members(built_dist)
    assert problems(members) == []
    for name in ("README.md", "docs/django.md", "sql/schema.sql",
                 "deploy/systemd/pg-notify-bridge@.service",
                 "deploy/systemd/pg-notify-bridge-django.service", "setup.cfg"):
        assert name in members, name


def test_problems_finds_what_must_not_ship() -> None:
    """The archive check itself reports a test module, a demo key and a missing bridge.js."""
    members = {name: b"" for name in REQUIRED if not name.endswith("bridge.js")}
    members["tests/test_x.py"] = b""
    members[".demo_secret_key"] = b"k"
    members["shop/settings.py"] = b'SECRET_KEY = "x"\n'
    assert problems(members) == [
        "missing django_hooks/static/django_hooks/bridge.js",
        "ships tests/test_x.py",
        "ships .demo_secret_key",
        "shop/settings.py assigns SECRET_KEY",
    ]


def test_wheel_runs_in_a_clean_venv(wheel_venv: WheelVenv) -> None:
    """`python -m bridge --help` runs from the wheel in a fresh venv, not from this checkout."""
    result = wheel_venv.run("-m", "bridge", "--help", cwd=wheel_venv.root)
    for command in ("serve", "install-triggers", "token", "status"):
        assert command in result.stdout
    where = wheel_venv.run(
        "-c", "import bridge, django_hooks; print(bridge.__file__); print(django_hooks.__file__)",
        cwd=wheel_venv.root).stdout.split()
    assert all(path.startswith(str(wheel_venv.root / "venv")) for path in where), where
