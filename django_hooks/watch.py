"""From BRIDGE['MODELS'] to tables: which table, channel and channel column each model uses.

The management command, the post_migrate handler and the checks all go
through here, so "the triggers a model should have" is computed in one place
and the same way `python -m bridge install-triggers` would be told it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist
from django.db import models

from bridge.errors import WatchError

from . import conf

_PLAIN = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Target:
    """A watched model resolved against the app registry."""

    model: type[models.Model]
    channel: str
    channel_column: str | None
    explicit_channel: bool

    @property
    def label(self) -> str:
        return self.model._meta.label

    @property
    def db_table(self) -> str:
        return self.model._meta.db_table

    @property
    def table_ref(self) -> str:
        """The table as `to_regclass` reads it: quoted unless it is plain lower case."""
        table = self.db_table
        return table if _PLAIN.match(table) else '"' + table.replace('"', '""') + '"'

    def install_kwargs(self) -> dict[str, str | None]:
        """What bridge.install.install()/plan() take besides the table."""
        return {
            "channel": self.channel if self.explicit_channel else None,
            "channel_column": self.channel_column,
        }




def resolve(entry: conf.Watched) -> Target:
    """Resolve one entry; raise WatchError naming what is wrong."""
    try:
        model = apps.get_model(entry.label)
    except (LookupError, ValueError) as exc:
        raise WatchError(f"BRIDGE['MODELS'] names {entry.label!r}, which is not a model") from exc
    column = None
    if entry.channel_column:
        try:
            column = model._meta.get_field(entry.channel_column).column  # type: ignore[union-attr]
        except FieldDoesNotExist:
            concrete = {f.column for f in model._meta.concrete_fields}
            if entry.channel_column not in concrete:
                raise WatchError(
                    f"{model._meta.label} has no field or column {entry.channel_column!r}"
                ) from None
            column = entry.channel_column
    channel = entry.channel or model._meta.db_table
    return Target(model, channel, column, explicit_channel=bool(entry.channel))


def targets(labels: list[str] | None = None) -> list[Target]:
    """The watched models (all, or those named by `labels`); raises WatchError."""
    entries = conf.watched()
    if labels:
        by_label = {e.label.lower(): e for e in entries}
        chosen = []
        for label in labels:
            if label.lower() not in by_label:
                raise WatchError(
                    f"{label!r} is not in BRIDGE['MODELS']: add it there, with its channel options"
                )
            chosen.append(by_label[label.lower()])
        entries = chosen
    return [resolve(e) for e in entries]


def by_channel(name: str) -> Target | None:
    """The watched model whose channel is `name` (a table channel), if any."""
    for entry in conf.watched():
        try:
            target = resolve(entry)
        except WatchError:
            continue
        if target.channel == name:
            return target
    return None
