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


class MetricErrorsExceeded(RunFailed):
    """A task's metric failed on more examples than budget.max_metric_errors allows. Completed steps are kept: a
    resume continues once the metric or the data is fixed."""


def error_line(error: BaseException, *, last: bool = False) -> str:
    """An error as the one line a message quotes: its first line (the headline), or with `last` its last one
    (the exception line of a traceback carried as text, as a Ray-wrapped error is); its type's name when it
    says nothing."""
    lines = str(error).strip().splitlines()
    if not lines:
        return type(error).__name__
    return lines[-1] if last else lines[0]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a run after it was set up; the message is the resume hint naming its directory.
    Still a KeyboardInterrupt, for code that catches that."""

    def __init__(self, resume_hint: str, *, run_dir: object) -> None:
        super().__init__(resume_hint)
        self.run_dir = run_dir
