"""What is measured: CPU time and peak RSS of the driver and the actor processes (/proc, Linux), and the endpoint's
utilization from its timeline of served requests."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

from gpo_ray.testing import FakeLLMConfig

_TICKS = os.sysconf("SC_CLK_TCK")


def endpoint_capacity(config: FakeLLMConfig) -> float:
    """Calls per second the endpoint can serve at most: its slots over its (mean) latency."""
    latency = float(config.latency_s) if not isinstance(config.latency_s, tuple) else sum(config.latency_s) / 2
    return config.concurrency / latency if latency > 0 else float("inf")


def cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process, from /proc (Linux), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def peak_rss(pid: int) -> int:
    """Peak resident bytes of a process (VmHWM), or 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class ProcessSampler:
    """Samples CPU time and peak RSS of the driver and of given actor processes until stopped; a process
    that exits keeps its last sample (actors are killed at the end of a run)."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.pids: dict[int, str] = {os.getpid(): "driver"}
        self.cpu: dict[int, float] = {}
        self.cpu_start: dict[int, float] = {}
        self.rss: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def add(self, pid: int, kind: str) -> None:
        self.pids[pid] = kind
        self._sample(pid)

    def _sample(self, pid: int) -> None:
        total = cpu_seconds(pid)
        if total is None:
            return
        self.cpu_start.setdefault(pid, total)
        self.cpu[pid] = total
        self.rss[pid] = max(self.rss.get(pid, 0), peak_rss(pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in list(self.pids):
                self._sample(pid)

    def __enter__(self) -> ProcessSampler:
        self._sample(os.getpid())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pid in list(self.pids):
            self._sample(pid)

    def cpu_seconds(self, kind: str | None = None) -> float:
        return sum(self.cpu[p] - self.cpu_start[p] for p, k in self.pids.items()
                   if p in self.cpu and (kind is None or k == kind))

    def peak_rss(self, kind: str) -> int:
        return max((self.rss.get(p, 0) for p, k in self.pids.items() if k == kind), default=0)


def utilization(timeline: Sequence[tuple[float, float, str]], *, capacity: float, wall: float,
                started: float | None = None) -> dict[str, Any]:
    """Calls per second over `capacity`, over the whole run (`wall`) and over the endpoint's active window, split by
    phase (generation = optimizer calls, scoring = task-model calls). `started`: time.monotonic() when the run
    began (the endpoint's clock is the same on one machine), to tell start-up and the tail from the active window."""
    if not timeline:
        return {"calls": 0}
    start = min(s for s, _, _ in timeline)
    end = max(e for _, e, _ in timeline)
    active = max(end - start, 1e-9)
    by_role: dict[str, int] = {}
    for _, _, role in timeline:
        by_role[role] = by_role.get(role, 0) + 1
    calls = len(timeline)
    return {
        "calls": calls,
        "whole_run": calls / wall / capacity,
        "active_window": calls / active / capacity,
        "active_window_s": active,
        "generation": by_role.get("optimizer", 0) / active / capacity,
        "scoring": by_role.get("task", 0) / active / capacity,
        "calls_by_phase": {"generation": by_role.get("optimizer", 0), "scoring": by_role.get("task", 0)},
        **({"startup_s": start - started, "tail_s": started + wall - end} if started is not None else {}),
    }
