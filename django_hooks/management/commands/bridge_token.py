"""Print a token for a user and channels: for scripts, tests and debugging with wscat."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from bridge import channels as channel_names
from bridge.config import parse_duration

from ... import tokens


class Command(BaseCommand):
    help = "Print a bridge token granting the given channels to a user (exactly those asked)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", required=True, metavar="USERNAME",
                            help="the user's username (USERNAME_FIELD)")
        parser.add_argument("--channel", action="append", required=True, metavar="CHANNEL",
                            help="a channel to grant; repeat it or use commas")
        parser.add_argument("--ttl", metavar="DURATION",
                            help="expire sooner than the daemon's token max age (30s, 5m, 1h)")

    def handle(self, *args: Any, **options: Any) -> str:
        names = [c.strip() for item in options["channel"] for c in item.split(",") if c.strip()]
        for name in names:
            if not channel_names.is_valid(name):
                raise CommandError(f"{name!r} is not a valid channel name")
        model = get_user_model()
        try:
            user = model._default_manager.get_by_natural_key(options["user"])
        except model.DoesNotExist as exc:
            raise CommandError(f"no user {options['user']!r}") from exc
        ttl = None
        if options["ttl"]:
            try:
                ttl = parse_duration(options["ttl"])
            except ValueError as exc:
                raise CommandError(f"--ttl: {exc}") from exc
        return tokens.mint(tokens.user_key(user), names, ttl=ttl)
