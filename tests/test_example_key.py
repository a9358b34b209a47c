"""example/secretkey.py: the example project signs with a random key of its checkout, never a
key from the repository."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bridge.auth import TokenError, Verifier
from bridge.config import PUBLIC_KEYS
from tests.django_site import REPO, child_env


def _env(key_file: Path) -> dict[str, str]:
    """A child environment with no key of its own: the example must find or make one."""
    env = child_env(EXAMPLE_SECRET_KEY_FILE=str(key_file))
    for name in ("DJANGO_SECRET_KEY", "BRIDGE_SECRET_KEY", "BRIDGE_SECRET_KEY_FILE"):
        env.pop(name, None)
    return env


def _settings_key(key_file: Path) -> str:
    return subprocess.run(
        [sys.executable, "-c", "import example.settings as s; print(s.SECRET_KEY)"],
        env=_env(key_file), cwd=REPO, check=True, capture_output=True, text=True, timeout=60,
    ).stdout.strip()


def test_each_checkout_gets_its_own_private_random_key(tmp_path: Path) -> None:
    """The first import writes a random 0600 key file; later imports read the same key."""
    first = _settings_key(tmp_path / "a")
    assert first == (tmp_path / "a").read_text().strip()
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    assert len(first) >= 50 and first not in PUBLIC_KEYS
    assert _settings_key(tmp_path / "a") == first
    assert _settings_key(tmp_path / "b") != first
    ignored = subprocess.run(["git", "check-ignore", "-q", ".demo_secret_key"], cwd=REPO,
                             timeout=60)
    assert ignored.returncode == 0, "the default key file must be git-ignored"


def test_the_daemon_on_the_example_settings_signs_with_the_checkout_key(tmp_path: Path) -> None:
    """`python -m bridge --django-settings example.settings` with no key set uses the
    checkout's key: its tokens verify with that key and not with the old published one."""
    key_file = tmp_path / "key"
    made = subprocess.run(
        [sys.executable, "-m", "bridge", "token", "--django-settings", "example.settings",
         "--user", "1", "--channel", "example_task"],
        env=_env(key_file), cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert made.returncode == 0, made.stderr
    assert made.stderr == ""  # a strong key: nothing to warn about
    token = made.stdout.strip()
    assert Verifier(key_file.read_text().strip()).verify(token).user == "1"
    for public in PUBLIC_KEYS:
        try:
            Verifier(public).verify(token)
        except TokenError:
            continue
        raise AssertionError("a token verified with a key published in the repository")
