"""SIGTERM as Ctrl-C: the handler does what SIGINT's does and remembers the signal; around ray.init the handler that
was there is put back, and Ray's exit-with-15 during ray.init becomes the same interrupt."""

from __future__ import annotations

import os
import signal

import pytest

from gpo_ray.runtime.signals import TerminationHandler, sigterm_handler_kept


def ray_like_handler(signum, frame):
    raise SystemExit(signum)  # what ray.init installs in the driver


def test_sigterm_raises_keyboard_interrupt_and_exits_143():
    before = signal.getsignal(signal.SIGTERM)  # Python's default, or Ray's if this process started Ray
    with TerminationHandler().installed() as stop:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # let the handler run
    assert stop.received == signal.SIGTERM and stop.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) is before, "the previous handler is back"


def test_ctrl_c_without_sigterm_exits_130():
    stop = TerminationHandler()
    stop.note_interrupt()
    assert stop.exit_code == 130


def test_the_handler_is_put_back_after_something_replaced_it():
    with TerminationHandler().installed() as stop:
        with sigterm_handler_kept():
            signal.signal(signal.SIGTERM, ray_like_handler)
        assert signal.getsignal(signal.SIGTERM) is stop


def test_ray_exiting_on_sigterm_during_init_becomes_the_interrupt_after_cleanup():
    aborted = []
    with TerminationHandler().installed() as stop:
        with pytest.raises(KeyboardInterrupt), sigterm_handler_kept(on_abort=lambda: aborted.append(True)):
            signal.signal(signal.SIGTERM, ray_like_handler)
            ray_like_handler(signal.SIGTERM, None)
        assert signal.getsignal(signal.SIGTERM) is stop
    assert aborted == [True] and stop.exit_code == 143
