"""Start-up and footprint of a small run, measured from process launch: `gpo-ray optimize` as a user starts it.

    .venv/bin/python -m benchmarks.startup                     # one task, 3 epochs, 8 candidates: about 15 s
    .venv/bin/python -m benchmarks.startup --repeat 3 --out /tmp/s.json
    .venv/bin/python -m benchmarks.startup -- --evaluators 2   # after `--`: more `gpo-ray optimize` flags

One `gpo-ray optimize` subprocess per repeat, against the fake endpoint (gpo_ray.testing.ProcessFake, fixed latency).
Reported: seconds from launch to the first LLM request the endpoint served (its timeline and this process share
the machine's monotonic clock), the run's wall time, and the peak of the summed PSS and RSS of every process of the
run (PSS from /proc/PID/smaps_rollup: shared pages are split between the processes that map them, so the sum is the
run's real footprint). The run's processes are found by an environment marker that the driver passes on to Ray's
daemons and workers. Also: each process's PSS at the peak and CPU seconds, and the driver's phases from its log
(driver.jsonl): when Ray started and was up, when the actors were asked for, when the run began.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.measure import cpu_seconds
from benchmarks.harness.workload import (
    SHARED_DATA,
    Workload,
    endpoint_config,
    synthetic_task,
)
from gpo_ray.config import TaskSource
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ProcessFake

MARKER = "GPO_RAY_STARTUP_BENCH"
TASK = "bbh/date_understanding"
TARGETS = {"first_call_s": 3.0, "peak_pss_mb": 600.0}  # issue 16's targets for a one-task local run

# What a process of the run is, from its command line (first match wins).
PROCESS_KINDS = (
    ("TrajectoryMemory", "memory actor"),  # ray::gpo-memory-<run>:TrajectoryMemory.add
    ("ray::Evaluator", "evaluator"),
    ("ray::Refiner", "refiner"),
    ("ray::DashboardAgent", "Ray dashboard agent"),
    ("dashboard/agent.py", "Ray dashboard agent"),
    ("ray::RuntimeEnvAgent", "Ray runtime-env agent"),
    ("runtime_env/agent", "Ray runtime-env agent"),
    ("dashboard/dashboard.py", "Ray dashboard (API server)"),
    ("autoscaler/_private/monitor.py", "Ray autoscaler monitor"),
    ("log_monitor.py", "Ray log monitor"),
    ("ray::IDLE", "Ray idle worker"),
    ("default_worker.py", "Ray worker (starting)"),
)


BINARIES = {"raylet": "Ray raylet", "gcs_server": "Ray GCS server"}  # by executable: their flags name the others


def process_kind(cmdline: str, *, driver_pid: int, pid: int) -> str:
    if pid == driver_pid:
        return "driver"
    executable = os.path.basename(cmdline.split(" ", 1)[0])
    if executable in BINARIES:
        return BINARIES[executable]
    for needle, kind in PROCESS_KINDS:
        if needle in cmdline:
            return kind
    return "other: " + cmdline[:60]


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return None


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(PSS, RSS) in kB from /proc/PID/smaps_rollup, or None once the process is gone."""
    text = _read(f"/proc/{pid}/smaps_rollup")
    if text is None:
        return None
    pss = rss = 0
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
        elif line.startswith("Rss:"):
            rss = int(line.split()[1])
    return pss, rss


def parent_pid(pid: int) -> int | None:
    """The parent of `pid` from /proc/PID/stat (after the command name, which may hold spaces)."""
    text = _read(f"/proc/{pid}/stat")
    if text is None:
        return None
    try:
        return int(text.rsplit(b")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


@dataclass
class RunSampler:
    """Samples every process carrying `marker` in its environment until stopped: their summed PSS and RSS (the
    peak, with each process's share at that moment), and each one's CPU seconds (its last sample)."""

    marker: bytes
    driver_pid: int
    interval: float = 0.1
    peak_pss_kb: int = 0
    peak_rss_kb: int = 0
    at_peak: dict[int, int] = field(default_factory=dict)  # pid -> PSS kB at the peak of the sum
    kinds: dict[int, str] = field(default_factory=dict)
    cmdlines: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _known_other: set[int] = field(default_factory=set)

    def _members(self) -> list[int]:
        pids = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if pid in self.kinds:
                pids.append(pid)
            elif pid not in self._known_other:
                env = _read(f"/proc/{pid}/environ")
                if env is not None and self.marker in env.split(b"\0"):
                    pids.append(pid)
                elif env is not None:
                    self._known_other.add(pid)
        return pids

    def sample(self) -> None:
        total_pss = total_rss = 0
        shares: dict[int, int] = {}
        members = self._members()
        memory = {pid: mem for pid in members if (mem := memory_kb(pid)) is not None}
        for pid, mem in memory.items():
            if memory.get(parent_pid(pid)) == mem:
                # A vfork child between fork and exec (subprocess, ctypes.util.find_library) shares its parent's
                # memory and reports the same figures: counted once. (A seen launch summed 871 MB this way.)
                continue
            cmdline = (_read(f"/proc/{pid}/cmdline") or b"").replace(b"\0", b" ").decode(errors="replace").strip()
            # A worker renames itself (ray::Evaluator) once its actor is made: the latest name wins (an exiting
            # process shows an empty command line: it keeps the name it had).
            if cmdline or pid not in self.kinds:
                self.kinds[pid] = process_kind(cmdline, driver_pid=self.driver_pid, pid=pid)
                self.cmdlines[pid] = cmdline[:160]
            total_pss += mem[0]
            total_rss += mem[1]
            shares[pid] = mem[0]
            cpu = cpu_seconds(pid)
            if cpu is not None:
                self.cpu[pid] = cpu
        if total_pss > self.peak_pss_kb:
            self.peak_pss_kb, self.at_peak = total_pss, shares
        self.peak_rss_kb = max(self.peak_rss_kb, total_rss)

    def run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()

    def by_kind(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for pid, kind in self.kinds.items():
            row = out.setdefault(kind, {"processes": 0, "pss_mb_at_peak": 0.0, "cpu_s": 0.0})
            row["processes"] += 1
            row["pss_mb_at_peak"] += self.at_peak.get(pid, 0) / 1024
            row["cpu_s"] += self.cpu.get(pid, 0.0)
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["pss_mb_at_peak"]))


PHASE_EVENTS = {  # driver.jsonl event -> phase name (the first occurrence)
    "library_log": "ray_init_logging",  # Ray's first message, during ray.init
    "ray_started": "ray_up",
    "trajectory_memory_started": "actors_requested",
    "run_started": "run_started",
    "task_started": "task_started",
    "run_finished": "run_finished",
}


def driver_phases(log: Path, *, launched_wall: float) -> dict[str, float]:
    """Seconds after launch of the driver's first log event of each kind in PHASE_EVENTS."""
    phases: dict[str, float] = {}
    if not log.is_file():
        return phases
    for line in log.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        name = PHASE_EVENTS.get(row.get("event", ""))
        if name and name not in phases and "timestamp" in row:
            at = datetime.fromisoformat(row["timestamp"]).timestamp()
            phases[name] = round(at - launched_wall, 3)
    return phases


def one_task(args: argparse.Namespace, scratch: Path) -> tuple[Workload, list[str]]:
    """The task, and the `gpo-ray optimize` arguments that name it: the shared BBH task, else a synthetic one."""
    if args.data_dir is not None and (args.data_dir / "BIG-Bench-Hard").is_dir():
        tasks = resolve_tasks([args.task], data_dir=args.data_dir, sources=[])
        workload = Workload(tasks, [t.name for t in tasks], args.data_dir, [], f"shared BBH ({args.data_dir})")
        return workload, ["--task", args.task, "--data-dir", str(args.data_dir)]
    folder = scratch / "data" / "t00"
    synthetic_task(folder, seed=0)
    source = TaskSource(name="bbh_shaped/t00", format="jsonl", path=folder, metric="numeric")
    tasks = resolve_tasks([source.name], data_dir=None, sources=[source])
    config = scratch / "task.yaml"  # JSON is YAML
    config.write_text(json.dumps({"tasks": [source.name], "task_sources": [source.model_dump(mode="json")]}))
    return Workload(tasks, [source.name], None, [source], "synthetic BBH-shaped (shared data absent)"), [str(config)]


def launch_once(args: argparse.Namespace, endpoint: ProcessFake, task_args: list[str], scratch: Path,
                extra: Sequence[str]) -> dict[str, Any]:
    """One `gpo-ray optimize` from launch to exit, sampled all along."""
    run_dir = scratch / f"run-{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "gpo_ray", "optimize", *task_args, "--epochs", str(args.epochs),
           "--candidates", str(args.candidates), "--base-url", endpoint.base_url, "--model", "fake-llm",
           "--run-dir", str(run_dir), "--quiet", *extra]
    marker = f"{MARKER}={uuid.uuid4().hex}"
    name, value = marker.split("=", 1)
    env = dict(os.environ, **{name: value})
    endpoint.reset()
    launched_wall, launched = time.time(), time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sampler = RunSampler(marker.encode(), driver_pid=proc.pid, interval=args.interval)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    _, stderr = proc.communicate()
    wall = time.monotonic() - launched
    sampler.stop()
    thread.join()
    if proc.returncode != 0:
        raise SystemExit(f"gpo-ray optimize failed ({proc.returncode}):\n{stderr.decode(errors='replace')[-3000:]}")
    timeline = endpoint.timeline()
    by_kind = sampler.by_kind()
    return {
        "first_call_s": (min(s for s, _, _ in timeline) - launched) if timeline else None,
        "wall_s": wall,
        "calls": len(timeline),
        "peak_pss_mb": sampler.peak_pss_kb / 1024,
        "peak_rss_mb": sampler.peak_rss_kb / 1024,
        "processes": len(sampler.kinds),
        "cpu_s": sum(sampler.cpu.values()),
        "cpu_s_ray_daemons": sum(r["cpu_s"] for k, r in by_kind.items() if k.startswith("Ray ")),
        "by_process": by_kind,
        "process_list": {pid: [sampler.kinds[pid], sampler.cmdlines.get(pid, "")] for pid in sampler.kinds},
        "driver_phases": driver_phases(run_dir / "logs" / "driver.jsonl", launched_wall=launched_wall),
        "run_dir": str(run_dir),
    }


def measure(report: dict[str, Any], args: argparse.Namespace, extra: Sequence[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        workload, task_args = one_task(args, scratch)
        report["workload"] = {"tasks": 1, "task": workload.task_names[0], "source": workload.source}
        report["endpoint"] = {"latency_s": args.latency, "slots": args.slots}
        report["command"] = ["gpo-ray", "optimize", *task_args, "--epochs", str(args.epochs), "--candidates",
                             str(args.candidates), "--base-url", "FAKE", "--model", "fake-llm", "--quiet", *extra]
        with ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots)) as endpoint:
            report["runs"] = []
            for i in range(args.repeat):
                run = launch_once(args, endpoint, task_args, scratch, extra)
                report["runs"].append(run)
                print(f"  run {i + 1}: first call {run['first_call_s']:.2f} s, wall {run['wall_s']:.1f} s, "
                      f"peak PSS {run['peak_pss_mb']:.0f} MB", flush=True)
    report["targets"] = TARGETS


def print_section(report: dict[str, Any]) -> None:
    print(f"\none task ({report['workload']['task']}, {report['workload']['source']}); endpoint "
          f"{report['endpoint']['latency_s'] * 1000:.0f} ms x {report['endpoint']['slots']} slots")
    print(f"{'run':>4}{'first call s':>14}{'wall s':>9}{'calls':>7}{'peak PSS MB':>13}{'peak RSS MB':>13}"
          f"{'processes':>11}{'CPU s':>8}{'Ray daemons CPU s':>19}")
    for i, r in enumerate(report["runs"], 1):
        print(f"{i:>4}{r['first_call_s']:14.2f}{r['wall_s']:9.1f}{r['calls']:7d}{r['peak_pss_mb']:13.0f}"
              f"{r['peak_rss_mb']:13.0f}{r['processes']:11d}{r['cpu_s']:8.1f}{r['cpu_s_ray_daemons']:19.1f}")
    last = report["runs"][-1]
    print(f"targets: first call <= {TARGETS['first_call_s']} s, peak PSS <= {TARGETS['peak_pss_mb']:.0f} MB")
    print("driver phases (s after launch, last run): "
          + ", ".join(f"{k} {v:.2f}" for k, v in last["driver_phases"].items()))
    print("at the PSS peak (last run):")
    for kind, row in last["by_process"].items():
        print(f"  {kind:34}{row['processes']:3d} x  {row['pss_mb_at_peak']:7.0f} MB PSS  {row['cpu_s']:6.1f} s CPU")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.Namespace, list[str]]:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    p = cli.parser("startup", __doc__)
    p.add_argument("--task", default=TASK, help="the shared BBH task to run (synthetic one if the data is absent)")
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--candidates", type=int, default=8)
    p.add_argument("--latency", type=float, default=0.05, help="endpoint seconds per request")
    p.add_argument("--slots", type=int, default=64, help="endpoint concurrent requests")
    p.add_argument("--repeat", type=int, default=1, help="launches, one after another")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between /proc samples")
    cli.add_out(p, "startup")
    return p.parse_args(argv), extra


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(argv)
    cli.quiet_logging()
    started = time.perf_counter()
    report = cli.new_report(argv)
    measure(report, args, extra)
    print_section(report)
    cli.finish(report, args.out, started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
