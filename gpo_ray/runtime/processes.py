"""Whether a process still runs, as the run's shutdown and the tests that kill processes need to know."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped) or a dead task counts as gone.

    Without procfs (macOS) the signal check is all there is; an unreadable stat file means the process is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc").is_dir():
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")
