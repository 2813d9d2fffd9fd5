"""Error types that reach the user. Each maps to an exit code at the CLI edge."""

from __future__ import annotations


class GpoError(Exception):
    """Base class; `exit_code` is what the CLI returns for it."""

    exit_code = 1


class InputError(GpoError):
    """Bad input from the user: config, arguments, data. Exit code 2."""

    exit_code = 2


class ConfigError(InputError):
    """A config file or flag that does not validate."""


class DataError(InputError):
    """A dataset that cannot be read: missing task, malformed line, empty split."""


class RunFailed(GpoError):
    """The run stopped after retries (endpoint down, disk full). `resume` can continue it."""

    exit_code = 1
