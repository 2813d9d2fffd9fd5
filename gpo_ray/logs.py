"""structlog set-up per process: JSON lines to the run's log file, console or JSON on stderr.

A redaction processor replaces the values of the configured API-key variables wherever they occur,
so a key that slips into an exception message still never reaches a log.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import structlog


def secret_values(env_names: Iterable[str | None]) -> list[str]:
    return [v for n in env_names if n and (v := os.environ.get(n)) and len(v) >= 4]


class Redact:
    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets = [s for s in secrets if s]

    def _clean(self, value: Any) -> Any:
        if isinstance(value, str):
            for s in self.secrets:
                value = value.replace(s, "***")
            return value
        if isinstance(value, dict):
            return {k: self._clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._clean(v) for v in value)
        return value

    def __call__(self, logger: Any, name: str, event: dict[str, Any]) -> dict[str, Any]:
        return self._clean(event) if self.secrets else event


class _Tee:
    """Write JSON lines to a file and, optionally, to stderr.

    A log file that cannot be written (disk full, read-only) loses the line instead of raising from
    whatever code logged it: the run's own writes then stop it with a clear error.
    """

    def __init__(self, file: TextIO | None, echo: TextIO | None) -> None:
        self.file, self.echo = file, echo

    def msg(self, message: str) -> None:
        if self.file is not None:
            try:
                self.file.write(message + "\n")
                self.file.flush()
            except OSError:
                pass
        if self.echo is not None:
            self.echo.write(message + "\n")
            self.echo.flush()

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def configure_logging(*, mode: str = "console", log_file: Path | None = None, secrets: Iterable[str] = ()) -> None:
    """mode: console (warnings on stderr, progress display), json (all events as JSON on stderr), quiet."""
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        Redact(secrets),
        structlog.processors.JSONRenderer(),
    ]
    file = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file = open(log_file, "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
    echo = sys.stderr if mode == "json" else None
    structlog.configure(
        processors=processors,
        logger_factory=lambda *a: _Tee(file, echo),
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=False,
    )
