"""Exceptions raised by pg-notify-bridge.

Every error a user can act on derives from one base class, so callers (the
CLI, the Django management commands) catch one type and print its message::

    BridgeError
    ├── ConfigError        a flag, variable or setting is missing or wrong
    ├── InstallError       install-triggers cannot do what was asked
    └── DatabaseError      the database cannot serve the daemon (no schema,
                           a standby, a transaction-pooling proxy)

Messages are lower case, say what to do, and carry no trailing period.
"""


class BridgeError(Exception):
    """Base class of every error that pg-notify-bridge reports to a user."""


class ConfigError(BridgeError):
    """A flag, environment variable or Django setting is missing or invalid."""


class InstallError(BridgeError):
    """Installing or removing capture triggers failed for a reason the user can fix."""


class DatabaseError(BridgeError):
    """The database cannot serve the daemon as configured."""
