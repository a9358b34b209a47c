"""The demo's and the tests' embedded PostgreSQL: ``django_hooks.devdb``, defaulting to
the checkout's own ``.pgdata`` (``python -m example.devdb start|stop|url|status [DIR]``).

The module itself ships in the package, for ``manage.py bridge_devdb``; this
name stays so the demo, the tests, the benchmarks and ``make distclean`` keep
one import path.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from django_hooks import devdb as _devdb
from django_hooks.devdb import (
    POSTGRES_BIN_PATH,
    SUPERUSER,
    SYSTEM_USER,
    DevDBError,
    django_database,
    is_running,
    restart,
    start,
    stop,
    tcp_url,
    url,
    with_dbname,
)

DEFAULT_DATADIR = Path(__file__).resolve().parent.parent / ".pgdata"
"""Where the demo keeps its cluster: git-ignored, at the top of the checkout."""

__all__ = [
    "DEFAULT_DATADIR",
    "POSTGRES_BIN_PATH",
    "SUPERUSER",
    "SYSTEM_USER",
    "DevDBError",
    "django_database",
    "is_running",
    "main",
    "restart",
    "start",
    "stop",
    "tcp_url",
    "url",
    "with_dbname",
]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m example.devdb ACTION [DIR]``, with the checkout's .pgdata by default."""
    return _devdb.main(argv, prog="python -m example.devdb", default_datadir=DEFAULT_DATADIR)


if __name__ == "__main__":
    sys.exit(main())
