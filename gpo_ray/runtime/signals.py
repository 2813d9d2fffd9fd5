"""SIGTERM handled as Ctrl-C is: what `kubectl delete pod`, `timeout` and process managers send to stop a run.

Python's default lets SIGTERM kill the process where it stands; in a Ray driver it is worse: `ray.init` installs
a Python handler that exits with code 15 and, in the C++ core worker below it, abseil's failure-signal handler,
which prints a stack dump (`*** SIGTERM received ...`) twice on the console. `TerminationHandler` turns SIGTERM
into what SIGINT does at that moment (inside `asyncio.run`: cancel the run's main task, so the controller's
`finally` writes the state; elsewhere: KeyboardInterrupt), and remembers it, so the CLI can say "terminated" and
exit with the shell's code for it (128 + 15). `sigterm_handler_kept` puts the handler back after `ray.init`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any


def in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


class TerminationHandler:
    """The SIGTERM handler of a command: SIGTERM does what SIGINT would; `received` says which came first."""

    def __init__(self) -> None:
        self.received: signal.Signals | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum)
        on_interrupt = signal.getsignal(signal.SIGINT)
        if callable(on_interrupt):
            on_interrupt(signal.SIGINT, frame)  # asyncio.run's own handler while a run goes, else Python's
        else:
            raise KeyboardInterrupt

    def note_interrupt(self) -> None:
        """A KeyboardInterrupt arrived: if no SIGTERM came first, it was Ctrl-C."""
        if self.received is None:
            self.received = signal.SIGINT

    @property
    def exit_code(self) -> int:
        """The shell's code for a process ended by the signal: 130 for SIGINT, 143 for SIGTERM."""
        return 128 + int(self.received or signal.SIGINT)

    @contextlib.contextmanager
    def installed(self) -> Iterator[TerminationHandler]:
        """Handle SIGTERM for the duration (main thread only: Python delivers signals there)."""
        if not in_main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_handler_kept(*, on_abort: Callable[[], Any] = lambda: None) -> Iterator[None]:
    """Around `ray.init`: put back the SIGTERM handler that was there before (ours, or Python's default), replacing
    Ray's Python handler and abseil's C++ one. A SIGTERM that Ray's handler turned into SystemExit(15) during
    `ray.init` is passed to the handler that was there (after `on_abort`, e.g. `ray.shutdown`)."""
    if not in_main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    except SystemExit as e:
        if e.code != signal.SIGTERM or not callable(previous):
            raise
        on_abort()
        signal.signal(signal.SIGTERM, previous)
        previous(signal.SIGTERM, None)
        raise
    finally:
        # SIG_DFL/SIG_IGN too: signal.signal replaces the C-level handler, abseil's with it.
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
