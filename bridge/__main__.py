"""`python -m bridge`: the daemon (`serve`, the default) and its tools.

Subcommands: serve, install-triggers, uninstall-triggers, token, status.
Every subcommand takes the database and key flags; flags beat BRIDGE_*
variables, which beat --django-settings, which beat defaults (config.py).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import logging
import sys
from collections.abc import Sequence

from . import config as configuration
from .errors import BridgeError, PortInUseError

COMMANDS = ("serve", "install-triggers", "uninstall-triggers", "token", "status")
_COMMON = ("database_url", "secret_key", "secret_key_file", "secret_key_fallbacks",
           "django_settings", "log_level", "log_format")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bridge",
        description="pg-notify-bridge: push PostgreSQL changes to browsers over WebSockets.",
        epilog="Without a subcommand, `serve` runs. `python -m bridge COMMAND --help` documents"
        " each: " + ", ".join(COMMANDS) + ".",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the daemon (default)",
                           description="Run the daemon: /v1 JSON protocol, / legacy `updated`,"
                           " /healthz, /readyz, /metrics.")
    configuration.add_arguments(serve)

    install = sub.add_parser("install-triggers", help="install capture triggers on tables",
                             description="Create or upgrade the bridge schema and install"
                             " statement-level capture triggers (idempotent).")
    install.add_argument("tables", nargs="+", metavar="TABLE")
    install.add_argument("--channel", help="channel name (only with one table; default: the"
                         " table's name)")
    install.add_argument("--channel-column", metavar="COL",
                         help="also emit to NAME:COL=<value> for each row's value")
    install.add_argument("--dry-run", action="store_true", help="print the SQL, change nothing")
    configuration.add_arguments(install, _COMMON)

    uninstall = sub.add_parser("uninstall-triggers", help="remove capture triggers from tables")
    uninstall.add_argument("tables", nargs="+", metavar="TABLE")
    configuration.add_arguments(uninstall, _COMMON)

    token = sub.add_parser("token", help="print a signed token",
                           description="Print a token signed like Django's signing.dumps, for"
                           " scripts and tests.")
    token.add_argument("--user", required=True, help="user id recorded in the token")
    token.add_argument("--channel", action="append", required=True, metavar="C",
                       help="channel to grant (repeat, or commas)")
    token.add_argument("--ttl", type=configuration.parse_duration, metavar="DURATION",
                       help="shorten the token's life (sets exp)")
    configuration.add_arguments(token, _COMMON)

    status = sub.add_parser("status", help="instances, log size and lag on one screen")
    status.add_argument("--metrics-url", action="append", default=[], metavar="URL",
                        help="a daemon's /metrics URL, for clients, channels and lag (repeat)")
    configuration.add_arguments(status, _COMMON)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if not args_list or args_list[0] not in (*COMMANDS, "-h", "--help"):
        args_list.insert(0, "serve")
    parser = build_parser()
    args = parser.parse_args(args_list)
    config: configuration.Config | None = None
    try:
        config = configuration.resolve(args)
        setup_logging(config.log_level, config.log_format)
        _warn(config, on_command_line=argv is None and (args.secret_key is not None
                                                         or bool(args.secret_key_fallbacks)))
        return _run(args, config)
    except BridgeError as exc:
        # With Django settings (runbridge, --django-settings), name manage.py's fix.
        django = bool(config.django_settings if config else getattr(args, "django_settings",
                                                                     None))
        print(f"error: {exc.for_user(django)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _run(args: argparse.Namespace, config: configuration.Config) -> int:
    if args.command == "serve":
        return _serve(config)
    from . import commands

    if args.command == "token":
        return commands.token(config, args.user, configuration.parse_list(args.channel),
                              args.ttl)
    configuration.require(config, "database_url")
    if args.command == "install-triggers":
        return commands.install_triggers(config, args.tables, args.channel, args.channel_column,
                                         args.dry_run)
    if args.command == "uninstall-triggers":
        return commands.uninstall_triggers(config, args.tables)
    return commands.status(config, args.metrics_url)


def _warn(config: configuration.Config, on_command_line: bool) -> None:
    """Log what resolve() found dubious, and a key given on this process's command line."""
    log = logging.getLogger("bridge")
    for warning in config.warnings:
        log.warning("%s", warning)
    if on_command_line:
        log.warning("a secret key is on the command line, where /proc/<pid>/cmdline shows it to"
                    " every local user: set BRIDGE_SECRET_KEY (BRIDGE_SECRET_KEY_FALLBACKS) or"
                    " use --secret-key-file instead")


def _serve(config: configuration.Config) -> int:
    from .server import run

    try:
        asyncio.run(run(config))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise
        # asyncio names the address it failed on: the metrics port, or else the main one.
        if config.metrics_port and f", {config.metrics_port})" in str(exc):
            raise PortInUseError("127.0.0.1", config.metrics_port, "--metrics-port") from None
        raise PortInUseError(config.host, config.port, "--port") from None
    return 0


class JsonFormatter(logging.Formatter):
    """One JSON object per line, for log shippers (--log-format json)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # websockets logs every refused handshake and closed socket at INFO; keep ours readable.
    logging.getLogger("websockets").setLevel(max(logging.WARNING, root.level))


if __name__ == "__main__":
    sys.exit(main())
