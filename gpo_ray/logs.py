"""structlog set-up per process: JSON lines to the run's log file, console or JSON on stderr.

A redaction processor replaces the values of the configured API-key variables wherever they occur,
so a key that slips into an exception message still never reaches a log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator
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



class _LibraryRecords(logging.Handler):
    """Stdlib log records (Ray's, Chroma's, ...) as structlog events, `library_log`, so they land in the run's
    log; with `console`, a warning that is not a routine notice is also shown, as one gpo-ray line on stderr."""

    def __init__(self, *, console: bool, routine: tuple[str, ...]) -> None:
        super().__init__(logging.INFO)
        self.console, self.routine = console, routine

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed record of a library must not break the run
            message = str(record.msg)
        library = record.name.split(".")[0]
        log = structlog.get_logger()
        warning = record.levelno >= logging.WARNING
        emit = log.error if record.levelno >= logging.ERROR else log.warning if warning else log.info
        emit("library_log", library=library, logger=record.name, message=message)
        if self.console and warning and not message.startswith(self.routine):
            first = (message.strip().splitlines() or [""])[0]
            print(f"gpo-ray: {library} warns: {first} (more in the run's logs/driver.jsonl)",
                  file=sys.stderr, flush=True)


@contextlib.contextmanager
def library_logs(*, console: bool, routine: tuple[str, ...] = (), detached: tuple[str, ...] = ()) -> Iterator[None]:
    """While the block runs, the stdlib log records of the libraries gpo-ray uses go into the run's log
    (driver.jsonl) instead of onto the console; with `console`, a warning that is not a `routine` notice (a
    message prefix) is also shown, as one gpo-ray line.

    The handler sits on the root logger, and the loggers in `detached`, which their library keeps from
    propagating, propagate to it meanwhile: ray.init(configure_logging=False) clears the "ray" logger's own
    handlers, and a record that then finds none is printed bare on stderr by logging's last resort (Ray's
    token-auth notice was)."""
    handler = _LibraryRecords(console=console, routine=routine)
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in detached]
    propagate = [lg.propagate for lg in loggers]
    root.addHandler(handler)
    for lg in loggers:
        lg.propagate = True
    try:
        yield
    finally:
        for lg, p in zip(loggers, propagate, strict=True):
            lg.propagate = p
        root.removeHandler(handler)
