"""The demo's secret key: random, made once per checkout, never in the repository.

A key that ships in a repository is public, and anyone holding it can forge
the bridge's tokens. So the example project has no key of its own: the first
`make demo` (or the first import of example.settings) writes
``secrets.token_urlsafe(50)`` to ``.demo_secret_key`` beside ``.pgdata`` (both
git-ignored, both removed by ``make distclean``), mode 0600, and both Django
and the daemon read it from there. DJANGO_SECRET_KEY or BRIDGE_SECRET_KEY in
the environment win over the file; EXAMPLE_SECRET_KEY_FILE moves it.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / ".demo_secret_key"


def path() -> Path:
    """Where this checkout keeps its demo key (EXAMPLE_SECRET_KEY_FILE, else .demo_secret_key)."""
    return Path(os.environ.get("EXAMPLE_SECRET_KEY_FILE") or DEFAULT_PATH)


def ensure(where: Path | None = None) -> str:
    """The key in `where` (default: path()), written there first when there is none.

    The key is written to a private temporary file and linked into place, so
    two processes starting at once (Django and the daemon) agree on one key
    and neither ever reads a half-written file.
    """
    where = path() if where is None else where
    if not where.exists():
        temporary = where.with_name(f".{where.name}.{os.getpid()}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_urlsafe(50) + "\n")
        try:
            os.link(temporary, where)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            temporary.unlink()
    return where.read_text().strip()
