"""Channel names: what they may look like and what a grant covers.

A channel is a table's name (`example_task`) or a row channel that narrows it
to the rows whose channel column has one value (`example_task:owner_id=7`).
The grammar is part of the public contract (docs/protocol.md) and doubles as the
first defence against injection: nothing that fails it reaches SQL or a log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# `\Z`, not `$`: `$` also matches before a trailing newline, which would let
# "example_task\n" through to a log line or the bridge.watched table.
CHANNEL_RE = re.compile(
    r"^[a-z_][a-z0-9_.]*(:[a-z_][a-z0-9_]*=[A-Za-z0-9_.-]{1,64})?\Z"
)
BASE_RE = re.compile(r"^[a-z_][a-z0-9_.]*\Z")
COLUMN_RE = re.compile(r"^[a-z_][a-z0-9_]*\Z")
VALUE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\Z")
MAX_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Channel:
    """A parsed channel name: the table channel, and for a row channel its column and value."""

    base: str
    column: str | None = None
    value: str | None = None

    @property
    def name(self) -> str:
        if self.column is None:
            return self.base
        return f"{self.base}:{self.column}={self.value}"


def is_valid(name: object) -> bool:
    """Whether `name` is a well-formed channel name (a str matching the contract's grammar)."""
    return isinstance(name, str) and len(name) <= MAX_LENGTH and CHANNEL_RE.match(name) is not None


def parse(name: str) -> Channel:
    """Split a valid channel name; raises ValueError for an invalid one."""
    if not is_valid(name):
        raise ValueError(f"invalid channel name {name[:80]!r}")
    base, sep, rest = name.partition(":")
    if not sep:
        return Channel(base)
    column, _, value = rest.partition("=")
    return Channel(base, column, value)


def grant_covers(grant: str, channel: str) -> bool:
    """Whether a token grant covers a channel: `NAME` covers itself and its row channels."""
    return channel == grant or (":" not in grant and channel.startswith(grant + ":"))


def granted(grants: frozenset[str] | set[str], channel: str) -> bool:
    """Whether any of `grants` covers `channel`."""
    if channel in grants:
        return True
    base = channel.partition(":")[0]
    return base != channel and base in grants
