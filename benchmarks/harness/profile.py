"""py-spy on the driver and every actor process of a distributed run, summarised per kind of process.

`--py-spy DIR` (benchmarks that make a distributed run): one `py-spy record --nonblocking -f raw` per process,
started from the `on_actors_started` hook, stopped (SIGINT) when the run ends; DIR/<kind>-<pid>.raw keeps the raw
stacks and `summary` gives each kind's top functions by inclusive samples (how "where the time goes" in
benchmarks/README.md was found). Sampling costs the profiled processes a little CPU: do not quote CPU per call from
a profiled run.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any


def py_spy() -> str:
    """The py-spy executable (the venv's one, else PATH), or a clear error."""
    here = Path(__import__("sys").executable).parent / "py-spy"
    found = str(here) if here.is_file() else shutil.which("py-spy")
    if not found:
        raise SystemExit("--py-spy: py-spy is not installed (pip install py-spy)")
    return found


class Profiler:
    def __init__(self, out: Path, *, rate: int = 100) -> None:
        self.out = out
        self.rate = rate
        self.procs: list[tuple[str, Path, subprocess.Popen[bytes]]] = []
        out.mkdir(parents=True, exist_ok=True)

    def add(self, pid: int, kind: str) -> None:
        path = self.out / f"{kind}-{pid}.raw"
        cmd = [py_spy(), "record", "--nonblocking", "-f", "raw", "-r", str(self.rate), "-o", str(path),
               "-p", str(pid)]
        self.procs.append((kind, path, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)))

    def stop(self) -> dict[str, Any]:
        for _, _, p in self.procs:
            p.send_signal(signal.SIGINT)
        for _, _, p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        return summary([(kind, path) for kind, path, _ in self.procs])


def summary(files: list[tuple[str, Path]], *, top: int = 25) -> dict[str, Any]:
    """Per kind: samples, and the top functions by inclusive share of samples (each counted once per stack)."""
    per_kind: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for kind, path in files:
        counts = per_kind.setdefault(kind, Counter())
        if not path.is_file():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            totals[kind] += int(n)
            for frame in {f.split(" (")[0] for f in stack.split(";") if f}:
                counts[frame] += int(n)
    return {kind: {"samples": totals[kind],
                   "top": [(name, round(n / max(totals[kind], 1), 3)) for name, n in counts.most_common(top)]}
            for kind, counts in per_kind.items()}
