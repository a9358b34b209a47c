"""Exceptions raised by pg-notify-bridge.

Every error a user can act on derives from one base class, so callers (the
CLI, the Django management commands) catch one type and print its message::

    BridgeError
    ├── ConfigError        a flag, variable or setting is missing or wrong
    │   ├── WatchError     a BRIDGE["MODELS"] entry cannot be watched
    │   │                  (raised by django_hooks.watch)
    │   └── PortInUseError a port the daemon should listen on is taken
    ├── InstallError       install-triggers cannot do what was asked
    ├── DatabaseError      the database cannot serve the daemon (a standby,
    │   │                  a transaction-pooling proxy)
    │   └── NoSchemaError  install-triggers has not run on it yet
    ├── TokenError         a token was refused (auth.Verifier); the message
    │                      is safe to show a client
    └── ProtocolError      a client frame cannot be acted on (protocol.parse);
                           it carries the `error` frame's code

The first three stop a command or the daemon; the last two are answered to
one client and the daemon goes on. Messages are lower case, say what to do,
and carry no trailing period. The fix depends on how the user runs the
bridge: `for_user(django=True)` names the manage.py command or setting where
a Django user has no Makefile, no table names and no BRIDGE_* variables.
"""


class BridgeError(Exception):
    """Base class of every error that pg-notify-bridge reports to a user."""

    def for_user(self, django: bool) -> str:
        """The message, naming the fix for a Django project when `django` is true."""
        return str(self)


class ConfigError(BridgeError):
    """A flag, environment variable or Django setting is missing or invalid."""


class InstallError(BridgeError):
    """Installing or removing capture triggers failed for a reason the user can fix."""


class DatabaseError(BridgeError):
    """The database cannot serve the daemon as configured."""


class WatchError(ConfigError):
    """A BRIDGE["MODELS"] entry names no model, or a model the bridge cannot watch."""


class NoSchemaError(DatabaseError):
    """The database has no `bridge` schema: install-triggers has not run on it.

    The one place for this message. `fix` says how to install it the way the
    user runs the bridge (the Django app passes its management command).
    """

    DEFAULT_FIX = ("run `python -m bridge install-triggers TABLE...` first"
                   " (`make install-triggers` from a checkout)")
    DJANGO_FIX = ("run `python manage.py migrate` (it installs the triggers of"
                  " BRIDGE['MODELS']) or `python manage.py bridge_install_triggers` first")

    def __init__(self, fix: str = DEFAULT_FIX):
        self.fix = fix
        super().__init__(f"the database has no bridge schema: {fix}")

    def for_user(self, django: bool) -> str:
        """Under runbridge or --django-settings: manage.py's commands, not the CLI's."""
        if django and self.fix == self.DEFAULT_FIX:
            return f"the database has no bridge schema: {self.DJANGO_FIX}"
        return str(self)


class PortInUseError(ConfigError):
    """A port the daemon should listen on is taken (often: the same daemon still running)."""

    def __init__(self, host: str, port: int, flag: str) -> None:
        self.flag = flag
        self.key = flag.removeprefix("--").upper().replace("-", "_")
        self.where = f"{host}:{port} is already in use (is another bridge still running?)"
        super().__init__(f"{self.where}: stop it, or choose another port with {flag} or"
                         f" BRIDGE_{self.key}")

    def for_user(self, django: bool) -> str:
        if not django:
            return str(self)
        once = "--port N" if self.flag == "--port" else f"-- {self.flag} N"
        return (f"{self.where}: stop it, or set BRIDGE[{self.key!r}] in the settings"
                f" (or run `python manage.py runbridge {once}`)")


class TokenError(BridgeError):
    """A token was refused; the message is safe to show (it never contains the token)."""


class ProtocolError(BridgeError):
    """A client frame that cannot be acted on; becomes an `error` frame with `code`."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
