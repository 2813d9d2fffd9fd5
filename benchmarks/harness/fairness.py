"""While a run goes: completed steps of every task (from its checkpoints) and the RSS of the driver and the actors,
sampled every few seconds. Fairness is the spread of completed steps across tasks; the RSS series shows whether
memory grows with the run's length.

The sampler is a thread of the driver process; its own CPU time (`time.thread_time`) is reported so that it can be
taken out of the driver's CPU.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gpo_ray.runtime.run_dir import task_file_name


def current_rss(pid: int) -> int:
    """Resident bytes of a process now (VmRSS), or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def completed_steps(checkpoints: Path, task: str) -> int:
    """Steps after the initial prompt checkpointed for `task` (0 before its first step)."""
    try:
        with open(checkpoints / task_file_name(task), "rb") as f:
            return max(0, f.read().count(b"\n") - 1)
    except OSError:
        return 0


class ProgressSampler:
    def __init__(self, run_dir: Path, tasks: Sequence[str], pids: Callable[[], dict[int, str]], *,
                 interval: float = 2.0) -> None:
        self.checkpoints = Path(run_dir) / "checkpoints"
        self.tasks = list(tasks)
        self.pids = pids
        self.interval = interval
        self.samples: list[dict[str, Any]] = []
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="progress-sampler")
        self._t0 = time.monotonic()

    def _sample(self) -> None:
        steps = [completed_steps(self.checkpoints, t) for t in self.tasks]
        rss: dict[str, int] = {}
        for pid, kind in self.pids().items():
            rss[kind] = rss.get(kind, 0) + current_rss(pid)
        self.samples.append({
            "t": round(time.monotonic() - self._t0, 2), "steps": sum(steps), "min": min(steps), "max": max(steps),
            "stdev": round(statistics.pstdev(steps), 3), "started": sum(1 for s in steps if s > 0),
            "rss_mb": {k: round(v / 2**20, 1) for k, v in rss.items()},
        })

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()
        self.cpu_s = time.thread_time()

    def __enter__(self) -> ProgressSampler:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self, total_steps: int) -> dict[str, Any]:
        """Spread of completed steps across tasks while the run went (samples between 10% and 90% of all steps),
        and RSS per kind of process against steps done."""
        going = [s for s in self.samples if 0.1 * total_steps <= s["steps"] <= 0.9 * total_steps]
        return {
            "interval_s": self.interval, "samples": self.samples, "sampler_cpu_s": self.cpu_s,
            "while_running": {
                "samples": len(going),
                "max_spread": max((s["max"] - s["min"] for s in going), default=None),
                "mean_stdev": round(statistics.fmean(s["stdev"] for s in going), 3) if going else None,
                "max_stdev": max((s["stdev"] for s in going), default=None),
            },
        }
