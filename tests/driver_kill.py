"""SIGKILL a driver in a child process mid-way (the sweep tests' "killed, then resumed")."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable


def sigkill_when(driver: subprocess.Popen, reached: Callable[[], bool], *, timeout: float = 300,
                 what: str = "the point to kill the driver at") -> None:
    """SIGKILL `driver` once `reached()` holds (polled every 50 ms); fails with the driver's stderr when it ended
    first, and naming `what` when that never came. The driver is never left running."""
    try:
        deadline = time.monotonic() + timeout
        while not reached() and driver.poll() is None:
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        assert driver.poll() is None, driver.stderr.read().decode()[-2000:]
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(30)
    finally:
        if driver.poll() is None:
            driver.kill()
