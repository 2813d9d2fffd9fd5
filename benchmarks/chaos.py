"""Chaos soak (issue 17; not part of CI): a 27-task run against the fake endpoint while a seeded, printed fault
schedule strikes at random, compared with an undisturbed run of the same seed.

    .venv/bin/python -m benchmarks.chaos                          # 15 minutes of faults, then the checks
    .venv/bin/python -m benchmarks.chaos --duration 120 --seed 7  # a short one
    .venv/bin/python -m benchmarks.chaos --chroma-server          # the memory on a `chroma run` server it restarts

What it does, in order:

1. A simulated three-node Ray cluster on this machine (`ray.cluster_utils.Cluster`): a head (`gpo_head`) and two
   worker nodes (`gpo_evaluator`, `gpo_refiner`). This process joins it to find and kill actors.
2. The undisturbed run: `gpo-ray optimize CONFIG --address ADDR` as a subprocess against three clean fake endpoints
   (`ProcessFake`s, the workload's answer key, `--latency` per request): the task model and the optimizer each
   balanced over all three (a role with `endpoints`). The optimizer too: after the first epoch the task model's
   requests are nearly all answered by the response cache, the optimizer's go on all run long.
3. The disturbed run: the same config (another run directory) against three fresh fake endpoints, while the
   schedule injects, each kind at least once and then at random: evaluator, refiner and memory-actor kills
   (`ray.kill` with restart, and SIGKILL of the actor's process), removal of a worker node (`allow_graceful=False`,
   a new one added after), a driver SIGKILL followed by `gpo-ray resume RUN_DIR`, at the first endpoint 429
   bursts, 500s, stalls, oversized and malformed replies (POST /faults: rates for a few seconds) and a short outage
   (its port refuses connections); one of the two other endpoints killed (`endpoint_killed`: SIGKILL,
   connections refused for 8-20 s, then a new fake on its port) or wedged (`endpoint_wedged`: SIGSTOP, it accepts
   and never answers for 30-45 s, longer than the client's wedge limit, then SIGCONT); and with `--chroma-server` a
   restart of the Chroma server. A driver that stops on its own (not killed by the schedule) is resumed too, and
   counted: that is a fault not recovered without help. An endpoint fault waits (at most 60 s) for any request
   from the current driver's actors; a rate window that no request fell in is held open 2 s at a time (up to 20 s
   more), and after a window of stalls the next fault waits for the client's read timeout, which is when a stalled
   reply becomes a failed attempt anyone can see. A killed or wedged endpoint, once back, is watched (at most 120 s)
   until the run's usage.json shows it ejected and sent its share again (re-admitted), before the next fault.
4. The checks: per task, the same step records (prompt, eval score, every candidate and its score) as the
   undisturbed run; every step in the checkpoints exactly once; every injected fault visible in gpo-ray's usage
   or logs (the run's driver.jsonl and the actors' lines in Ray's worker logs; for endpoint faults, at least as
   many failed attempts of the kind as the endpoint served; for a killed or wedged endpoint, its `ejections` in
   usage.json grown, and since it came back sent at least 6 requests (more than every client's probe) and half an
   even share (re-admitted): one that the run's end cut short is not judged); after the cluster, the endpoints and
   the Chroma server are stopped, no process of the soak alive and none of the ports it listened on taken.
5. A table of faults scheduled and injected by kind (each skipped one listed with why), recovered, seen, not
   judged (an effect cut short by a driver kill, with why), and the time to the next completed step after each;
   the wall time lost (disturbed minus undisturbed); JSON in benchmarks/results/chaos-SEED.json.

Determinism: the fake answers each request as a pure function of it (a fault is a failed attempt, its retry gets
the same answer; the three endpoints are alike, so which one a request goes to changes nothing), and every
optimizer request carries the run's seed, so both runs ask and get the same things. The response cache stays on
(the default a user has): a resumed driver and a restarted actor then find what was answered before, and a kill in
the middle of a cache write is part of what is tested.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.harness import cli
from benchmarks.harness.workload import (
    SHARED_DATA,
    Workload,
    endpoint_config,
    load_workload,
)

ROOT = Path(__file__).resolve().parents[1]
CHROMA = Path(sys.executable).parent / "chroma"
WORKER_RESOURCES = {"gpo_evaluator": 100, "gpo_refiner": 100}
NAMESPACE = "gpo-ray"  # gpo_ray.actors.memory.MEMORY_NAMESPACE: the run's actors are named in it
ACTOR_CLASSES = {"evaluator": "Evaluator", "refiner": "Refiner", "memory": "TrajectoryMemory"}

# Endpoint faults as POST /faults rates: (fault name, rate range, window range in s), and the error kind gpo-ray's
# client gives the failed attempt (what its usage and its llm_retry log lines count).
RATE_FAULTS: dict[str, tuple[str, tuple[float, float], tuple[float, float]]] = {
    "endpoint_429_burst": ("429", (0.3, 0.8), (5, 15)),
    "endpoint_500s": ("500", (0.2, 0.5), (5, 15)),
    "endpoint_stalls": ("stall", (0.02, 0.06), (8, 15)),
    "endpoint_oversized": ("oversized", (0.05, 0.2), (5, 15)),
    "endpoint_malformed": ("malformed", (0.1, 0.3), (5, 15)),
}
ERROR_KIND = {"429": "rate_limited", "500": "server_error", "stall": "stalled", "oversized": "oversized",
              "malformed": "malformed", "outage": "connection"}
OUTAGE_S = (3.0, 8.0)
READ_TIMEOUT_S = 10.0  # the runs' read_timeout_s (its default): a stalled reply fails this long after it stops
# Both roles are balanced over ENDPOINTS fakes (the first takes the rate faults and the outage); one of the others
# is killed (SIGKILL: connections refused, then a new fake on its port) or wedged (SIGSTOP: it accepts and never
# answers, then SIGCONT) for this long. A wedge outlasts the client's wedge limit
# (at least 10 s, 8 times the median latency: 16 s at 2 s a request), or nothing calls it wedged.
ENDPOINTS = 3
ENDPOINT_DOWN_S = {"endpoint_killed": (8.0, 20.0), "endpoint_wedged": (30.0, 45.0)}
# Re-admitted: since it came back, the endpoint was sent at least READMIT_REQUESTS (more than a probe from each
# client: until a probe answers, a client sends it nothing else) and half its even share of both roles' requests.
READMIT_REQUESTS = 6
READMIT_WAIT_S = 120.0  # how long a killed or wedged endpoint that came back is watched for its re-admission
ACTOR_KILLS = [f"{actor}_{how}" for actor in ACTOR_CLASSES for how in ("ray_kill", "sigkill")]
BASE_KINDS = [*ACTOR_KILLS, "worker_node_removal", "driver_sigkill", *RATE_FAULTS, "endpoint_outage",
              *ENDPOINT_DOWN_S]
FAULT_EVERY_S = 30.0  # on average, beyond the one fault of each kind


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = cli.parser("chaos", __doc__)
    p.add_argument("--duration", type=float, default=900.0, help="seconds of faults (the disturbed run's length)")
    p.add_argument("--seed", type=int, default=None, help="the schedule's seed (default: a random one, printed)")
    p.add_argument("--chroma-server", action="store_true",
                   help="the memory on a `chroma run` server this soak starts (and restarts as a fault)")
    p.add_argument("--tasks", type=int, default=27, help="BBH tasks to run (27 = all)")
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA,
                   help="the shared GPO data (BIG-Bench-Hard inside); absent: synthetic BBH-shaped tasks")
    p.add_argument("--latency", type=float, default=2.0, help="endpoint seconds per request")
    p.add_argument("--slots", type=int, default=256, help="endpoint concurrent requests")
    p.add_argument("--epochs", type=int, default=None, help="default: enough to fill --duration (see epochs_for)")
    p.add_argument("--keep", action="store_true", help="keep the scratch folder (run directories, logs)")
    p.add_argument("--out", type=Path, default=None, help="JSON report (default benchmarks/results/chaos-SEED.json)")
    return p.parse_args(argv)


def epochs_for(duration: float, latency: float) -> int:
    """Epochs that make the undisturbed run last about `duration` (measured at 0.5 s and 4 s a request, 2 cores). The
    first epoch scores every new candidate: about 8,000 requests for 27 tasks through 128 evaluator slots; in later
    ones the scripted optimizer has run out of new phrases and most candidates repeat earlier ones, dropped unscored,
    so a step takes about one round of requests: six steps an epoch (48 training examples in batches of 8)."""
    first = 30 + 8000 / (128 / latency)
    return max(1, 1 + math.ceil((duration - first) / (6 * latency)))


# --- processes and ports --------------------------------------------------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in ticks) of a process, or None once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[1]), int(fields[19])


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(int(entry.name))
        if stat is not None:
            children.setdefault(stat[0], []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def listening_ports() -> dict[int, int]:
    """socket inode -> port of every TCP socket listening on this machine (/proc/net/tcp, tcp6)."""
    ports: dict[int, int] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                cols = line.split()
                if cols[3] == "0A":  # LISTEN
                    ports[int(cols[9])] = int(cols[1].rsplit(":", 1)[1], 16)
    return ports


def ports_of(pid: int, listening: dict[int, int]) -> set[int]:
    found: set[int] = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in listening:
                        found.add(listening[inode])
    return found


class Footprint:
    """Every process below this one (the cluster's, the endpoints', the drivers' and their workers) and every port
    they listened on, sampled while the soak runs: what must be gone at the end."""

    def __init__(self) -> None:
        self.processes: dict[tuple[int, int], str] = {}  # (pid, start ticks) -> command line
        self.ports: set[int] = set()

    def sample(self) -> None:
        listening = listening_ports()
        for pid in descendants(os.getpid()):
            stat = _proc_stat(pid)
            if stat is None:
                continue
            key = (pid, stat[1])
            if key not in self.processes:
                self.processes[key] = _cmdline(pid)[:160]
            self.ports |= ports_of(pid, listening)

    def left_behind(self) -> dict[str, Any]:
        """Processes of the soak still alive (this process's multiprocessing resource tracker aside: it ends with
        this process), and the ports they listened on that are listened on again - by a process of the soak
        (`ports_taken`) or, on a shared machine, by someone else's that took the freed port (`ports_reused`)."""
        alive = [{"pid": pid, "cmd": cmd} for (pid, start), cmd in self.processes.items()
                 if (s := _proc_stat(pid)) is not None and s[1] == start and "resource_tracker" not in cmd]
        listening = listening_ports()
        owners: dict[int, int] = {}
        for entry in Path("/proc").glob("[0-9]*"):
            for port in ports_of(int(entry.name), listening) & self.ports:
                owners[port] = int(entry.name)
        ours = {pid for pid, _ in self.processes}
        taken = sorted(p for p, pid in owners.items() if pid in ours)
        reused = {p: _cmdline(pid)[:80] for p, pid in owners.items() if pid not in ours}
        unknown = sorted(p for p in self.ports & set(listening.values()) if p not in owners)
        return {"processes_seen": len(self.processes), "ports_seen": sorted(self.ports), "alive": alive,
                "ports_taken": taken + unknown, "ports_reused_by_others": reused}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- the pieces: cluster, Chroma server, driver ---------------------------------------------------------------


class SimulatedCluster:
    """A head and two worker nodes on this machine; a removed worker is replaced so the next removal has one."""

    def __init__(self) -> None:
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"gpo_head": 1}})
        self.workers = [self._add() for _ in range(2)]
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def _add(self) -> Any:
        return self.cluster.add_node(num_cpus=1, resources=dict(WORKER_RESOURCES))

    def remove_worker(self, rng: random.Random) -> dict[str, Any]:
        victim = self.workers.pop(rng.randrange(len(self.workers)))
        self.cluster.remove_node(victim, allow_graceful=False)
        self.workers.append(self._add())
        return {"removed_node": victim.node_id, "added_node": self.workers[-1].node_id}

    def shutdown(self) -> None:
        self.cluster.shutdown()


class ChromaServer:
    """`chroma run --path DIR --port N` of this venv, restartable on the same port and data."""

    def __init__(self, path: Path, log: Path) -> None:
        self.path, self.log, self.port = path, log, free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([str(CHROMA), "run", "--path", str(self.path), "--port", str(self.port)],
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2):
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"chroma run exited with {self.proc.returncode}; see {self.log}")
            time.sleep(0.2)
        raise RuntimeError(f"chroma run did not answer within 120 s; see {self.log}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def restart(self) -> dict[str, Any]:
        old = self.proc.pid if self.proc else None
        self.stop()
        self.start()
        return {"old_pid": old, "new_pid": self.proc.pid if self.proc else None}


class Driver:
    """`gpo-ray optimize CONFIG`, then `gpo-ray resume RUN_DIR` after each kill or stop, as subprocesses."""

    def __init__(self, config_file: Path, run_dir: Path, address: str, logs: Path) -> None:
        self.config_file, self.run_dir, self.address, self.logs = config_file, run_dir, address, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.launches: list[dict[str, Any]] = []
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
        self.env["PYTHONPATH"] = str(ROOT)

    def _launch(self, args: list[str]) -> None:
        log = self.logs / f"driver-{self.run_dir.name}-{len(self.launches)}.log"
        with open(log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gpo_ray", *args, "--quiet"], cwd=ROOT, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)
        self.launches.append({"command": args[0], "pid": self.proc.pid, "log": str(log), "at": time.monotonic()})

    def start(self) -> None:
        self._launch(["optimize", str(self.config_file), "--address", self.address])

    def resume(self) -> None:
        self._launch(["resume", str(self.run_dir), "--address", self.address])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def sigkill(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        os.kill(pid, signal.SIGKILL)
        self.proc.wait(60)
        self.launches[-1]["exit"] = "SIGKILL"
        return pid

    def finished(self) -> tuple[int, str] | None:
        """(exit code, the output's last line) once the current process has ended by itself, else None."""
        if self.proc is None or self.proc.poll() is None:
            return None
        code = self.proc.returncode
        self.launches[-1]["exit"] = code
        lines = Path(self.launches[-1]["log"]).read_text(errors="replace").strip().splitlines()
        return code, (lines[-1] if lines else "")

    def status(self) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((self.run_dir / "results.json").read_text()).get("status")
        return None


# --- actors -----------------------------------------------------------------------------------------------------


def run_actors(kind: str, driver_pid: int) -> list[dict[str, Any]]:
    """The live actors of `kind` of the driver process `driver_pid` (not a killed driver's, still being removed),
    from Ray's GCS."""
    from ray._private.state import actors, jobs

    job = next((j["JobID"] for j in jobs() if j["DriverPid"] == driver_pid and not j["IsDead"]), None)
    wanted = ACTOR_CLASSES[kind]
    return [a for a in actors().values() if a["ActorClassName"] == wanted and a["State"] == "ALIVE"
            and a.get("Pid") and a["JobID"] == job]


def kill_actor(info: dict[str, Any], how: str) -> None:
    if how == "ray_kill":  # the run's actors are named (launch/actors.py start_actors): a handle from here, then ray.kill
        import ray

        ray.kill(ray.get_actor(info["Name"], namespace=NAMESPACE), no_restart=False)
    else:
        os.kill(int(info["Pid"]), signal.SIGKILL)


# --- the schedule -------------------------------------------------------------------------------------------------


@dataclass
class Fault:
    at_s: float  # after the disturbed run's start
    kind: str
    params: dict[str, Any] = field(default_factory=dict)
    injected_at_s: float | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    next_step_s: float | None = None  # from the injection to the next step checkpointed
    recovered: bool | None = None
    seen: bool | None = None
    not_judged: str | None = None  # why `seen` is None for an injected fault (its effect was cut short)


def make_schedule(rng: random.Random, duration: float, kinds: list[str]) -> list[Fault]:
    """Every kind once, then random kinds (one per FAULT_EVERY_S), in a seeded order, one at a random time in each
    equal slot of `duration`. Faults go one after another: an endpoint fault's window ends before the next."""
    count = max(len(kinds), int(duration // FAULT_EVERY_S))
    order = kinds + [rng.choice(kinds) for _ in range(count - len(kinds))]
    rng.shuffle(order)
    start = 15.0  # the actors are up and the first steps are done
    slot = (duration - start) / count
    faults = []
    for i, kind in enumerate(order):
        at = start + i * slot + rng.uniform(0, 0.5 * slot)
        params: dict[str, Any] = {}
        if kind in RATE_FAULTS:
            name, (lo, hi), (wlo, whi) = RATE_FAULTS[kind]
            params = {"fault": name, "rate": round(rng.uniform(lo, hi), 3), "for_s": round(rng.uniform(wlo, whi), 1)}
        elif kind == "endpoint_outage":
            params = {"outage_s": round(rng.uniform(*OUTAGE_S), 1)}
        elif kind in ENDPOINT_DOWN_S:
            params = {"target": rng.randrange(1, ENDPOINTS),
                      "down_s": round(rng.uniform(*ENDPOINT_DOWN_S[kind]), 1)}
        elif kind in ACTOR_KILLS or kind == "worker_node_removal":
            params = {"pick": rng.random()}
        faults.append(Fault(at_s=round(at, 1), kind=kind, params=params))
    return faults


TRAFFIC_WAIT_S = 60.0  # an endpoint fault waits at most this long for requests to the endpoint
WINDOW_STEP_S, WINDOW_EXTENSION_S = 2.0, 20.0  # a rate window no request fell in is held open 2 s more, up to 20 s


def effect_after_window(fault: str) -> float:
    """How long after its window an endpoint fault can still fail a request in a client: a stalled reply fails
    only when the read timeout cuts it; the others fail as they are answered."""
    return READ_TIMEOUT_S if fault == "stall" else 0.0


def wait_for_traffic(fake: Any, ready: Callable[[], bool] = lambda: True, *, limit_s: float = TRAFFIC_WAIT_S,
                     clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
                     ) -> float | None:
    """Seconds waited until a new request reaches the endpoint while `ready()` (the current driver's actors are
    up), or None after `limit_s`. Any one new request will do: traffic comes in bursts a request's latency apart,
    so a rule that wanted requests in several half seconds in a row was never met by a small run."""
    start = clock()
    last = fake.stats()["requests"]
    while clock() - start < limit_s:
        sleep(0.25)
        now = fake.stats()["requests"]
        if now > last and ready():
            return clock() - start
        last = now
    return None


# --- the soak -------------------------------------------------------------------------------------------------------


class Sampler:
    """Samples the run's progress (every 0.25 s) and the soak's processes and ports (every 2 s) on a thread, so that
    a fault that blocks the main loop (an endpoint window) does not blur the time to the next step."""

    def __init__(self, progress: Progress | None, footprint: Footprint) -> None:
        self.progress, self.footprint = progress, footprint
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="chaos-sampler", daemon=True)

    def _loop(self) -> None:
        last = 0.0
        while not self._stop.wait(0.25):
            if self.progress is not None:
                self.progress.sample()
            if time.monotonic() - last > 2:
                self.footprint.sample()
                last = time.monotonic()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.progress is not None:
            self.progress.sample()
        self.footprint.sample()


class Progress:
    """The run's checkpointed steps over time (all tasks together), sampled from the checkpoint files."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.samples: list[tuple[float, int]] = []

    def count(self) -> int:
        total = 0
        for path in (self.run_dir / "checkpoints").glob("*.jsonl"):
            with contextlib.suppress(OSError):
                total += path.read_bytes().count(b"\n")
        return total

    def sample(self) -> None:
        n = self.count()
        if not self.samples or self.samples[-1][1] != n:
            self.samples.append((time.monotonic(), n))

    def next_step_after(self, t: float) -> float | None:
        before = max((n for s, n in self.samples if s <= t), default=0)
        return next((s - t for s, n in self.samples if s > t and n > before), None)


def write_config(workload: Workload, *, base_urls: Sequence[str], run_dir: Path, address: str, epochs: int,
                 chroma: ChromaServer | None, path: Path) -> Path:
    """The run's config: the task model and the optimizer each balanced over every endpoint in `base_urls`."""
    from gpo_ray.config import RunConfig

    role = {"base_url": base_urls[0], "endpoints": [{"base_url": u} for u in base_urls[1:]], "model": "fake-llm",
            "max_tokens": 64, "max_in_flight": 64, "timeout_s": 60, "read_timeout_s": READ_TIMEOUT_S}
    config = RunConfig(
        tasks=workload.task_names, data_dir=workload.data_dir, task_sources=workload.sources,
        task_model=role, optimizer_model=role | {"temperature": 1.0},
        optimizer=dict(epochs=epochs, batch_size=8, candidates=4, seed=3, eval_limit=16, evaluate_test=False,
                       initial_prompt="Answer the question."),
        cluster={"address": address, "num_refiners": 2, "num_evaluators": 2, "evaluator_max_in_flight": 64,
                 **({"chroma_host": "127.0.0.1", "chroma_port": chroma.port} if chroma else {})},
        run_dir=run_dir,
    )
    path.write_text(json.dumps(config.public_dict(), indent=1))
    return path


def run_to_completion(driver: Driver, *, limit_s: float) -> dict[str, Any]:
    """Wait for the driver to finish the run; a driver that stops by itself is resumed (and recorded)."""
    stops: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        ended = driver.finished()
        if ended is not None:
            code, line = ended
            if code == 0 and driver.status() == "completed":
                return {"completed": True, "stops": stops}
            stops.append({"exit": code, "line": line[-400:], "at": time.monotonic()})
            print(f"  ! the driver stopped by itself (exit {code}): {line[-200:]}; resuming", flush=True)
            if len(stops) > 10:
                break
            driver.resume()
        time.sleep(0.5)
    return {"completed": False, "stops": stops}


def endpoint_usage(run_dir: Path, url: str) -> tuple[int, int, int]:
    """(requests sent to the endpoint `url`, its ejections, requests sent to all endpoints), both roles together,
    in the run's usage.json; zeros before it is written. They count on across actor restarts and resumes
    (controller/ledger.py)."""
    sent_to_it = ejections = sent_to_all = 0
    with contextlib.suppress(OSError, ValueError, AttributeError):
        usage = json.loads((run_dir / "usage.json").read_text())
        for role in ("task_model", "optimizer"):
            sent = usage.get(role, {}).get("endpoints", {})
            sent_to_it += int(sent.get(url, 0))
            ejections += int(usage.get(role, {}).get("ejections", {}).get(url, 0))
            sent_to_all += int(sum(sent.values()))
    return sent_to_it, ejections, sent_to_all


def readmitted(sent_to_it: int, sent_to_all: int) -> bool:
    """Whether an endpoint that came back is in the balance again, from the requests sent since: more than probes,
    and at least half an even share."""
    return sent_to_it >= READMIT_REQUESTS and sent_to_it * 2 * ENDPOINTS >= sent_to_all


def signal_quietly(fake: Any, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, TypeError):
        os.kill(fake.process.pid, sig)


class Soak:
    def __init__(self, args: argparse.Namespace, seed: int, work: Path) -> None:
        self.args, self.seed, self.work = args, seed, work
        self.rng = random.Random(seed)
        self.footprint = Footprint()
        self.cluster: SimulatedCluster | None = None
        self.chroma: ChromaServer | None = None
        self.fake_ports: list[int] = []
        self.fakes: list[Any] = []  # the current run's endpoints; a killed one is replaced by a new one on its port
        self.killed_pids: set[int] = set()  # actor processes killed by the schedule
        self.workload: Workload | None = None

    # one run -------------------------------------------------------------------------------------------------
    def endpoint(self, workload: Workload, *, port: int = 0) -> Any:
        """A fake endpoint; every one answers each request alike (a pure function of it), so which of a role's
        endpoints a request goes to changes nothing in the run."""
        from gpo_ray.testing import ProcessFake

        fake = ProcessFake(endpoint_config(workload, latency=self.args.latency, slots=self.args.slots,
                                           timeline=False), port=port)
        self.fake_ports.append(fake.port)
        return fake

    @contextlib.contextmanager
    def endpoints(self, workload: Workload) -> Any:
        """ENDPOINTS fresh fakes as `self.fakes`; at the end every one (stopped ones continued) closed."""
        self.workload = workload
        self.fakes = []
        try:
            self.fakes.extend(self.endpoint(workload) for _ in range(ENDPOINTS))
            yield self.fakes
        finally:
            for fake in self.fakes:
                signal_quietly(fake, signal.SIGCONT)
                fake.close()

    def endpoint_stats(self) -> dict[str, Any]:
        """The first endpoint's counters (the rate faults'), and requests served by each."""
        return {**self.fakes[0].stats(), "requests_per_endpoint": [f.stats()["requests"] for f in self.fakes]}

    def undisturbed(self, workload: Workload, epochs: int) -> dict[str, Any]:
        assert self.cluster is not None
        run_dir = self.work / "undisturbed"
        with self.endpoints(workload) as fakes:
            cfg = write_config(workload, base_urls=[f.base_url for f in fakes], run_dir=run_dir,
                               address=self.cluster.address, epochs=epochs, chroma=self.chroma,
                               path=self.work / "undisturbed.json")
            driver = Driver(cfg, run_dir, self.cluster.address, self.work)
            started = time.monotonic()
            with Sampler(None, self.footprint):
                driver.start()
                done = run_to_completion(driver, limit_s=8 * self.args.duration + 1800)
            wall = time.monotonic() - started
            stats = self.endpoint_stats()
        return {"run_dir": str(run_dir), "wall_s": wall, **done, "endpoint": stats}

    def disturbed(self, workload: Workload, epochs: int, schedule: list[Fault]) -> dict[str, Any]:
        assert self.cluster is not None
        run_dir = self.work / "disturbed"
        progress = Progress(run_dir)
        with self.endpoints(workload) as fakes:
            fake = fakes[0]
            cfg = write_config(workload, base_urls=[f.base_url for f in fakes], run_dir=run_dir,
                               address=self.cluster.address, epochs=epochs, chroma=self.chroma,
                               path=self.work / "disturbed.json")
            driver = Driver(cfg, run_dir, self.cluster.address, self.work)
            started = time.monotonic()
            sampler = Sampler(progress, self.footprint).__enter__()
            driver.start()
            stops: list[dict[str, Any]] = []
            def completed() -> bool:
                """Whether the run is done; a driver that stopped by itself is resumed (and recorded)."""
                ended = driver.finished()
                if ended is None:
                    return False
                if ended[0] == 0 and driver.status() == "completed":
                    return True
                stops.append({"exit": ended[0], "line": ended[1][-400:], "at_s": time.monotonic() - started})
                print(f"  ! the driver stopped by itself (exit {ended[0]}): {ended[1][-200:]}; resuming", flush=True)
                driver.resume()
                return False

            for fault in schedule:
                while time.monotonic() - started < fault.at_s and not completed():
                    time.sleep(0.25)
                if completed():
                    fault.skipped = "the run had finished"
                    continue
                self.inject(fault, driver, fake, started, run_dir)
                print(f"  {fault.injected_at_s or fault.at_s:7.1f}s  {fault.kind:24s} "
                      f"{fault.skipped or json.dumps(fault.outcome)[:110]}", flush=True)
            done = run_to_completion(driver, limit_s=8 * self.args.duration + 1800)
            done["stops"] = stops + [{**s, "at_s": s.pop("at") - started} for s in done["stops"]]
            wall = time.monotonic() - started
            sampler.__exit__(None, None, None)
            stats = self.endpoint_stats()
        for fault in schedule:
            if fault.injected_at_s is not None:
                fault.next_step_s = progress.next_step_after(started + fault.injected_at_s)
        return {"run_dir": str(run_dir), "wall_s": wall, **done, "endpoint": stats,
                "launches": [{k: v for k, v in x.items() if k != "at"} | {"at_s": x["at"] - started}
                             for x in driver.launches]}

    # faults ------------------------------------------------------------------------------------------------------
    def inject(self, fault: Fault, driver: Driver, fake: Any, started: float, run_dir: Path) -> None:
        kind = fault.kind
        if kind in ACTOR_KILLS:
            actor, how = kind.split("_", 1)
            deadline = time.monotonic() + 60  # a resumed driver may still be starting its actors

            def alive() -> list[dict[str, Any]]:
                # Ray lists a SIGKILLed actor as alive until it notices: a second kill of that process right after the
                # first would be no fault at all (one restart for two kills), so wait for the restarted process.
                return [a for a in run_actors(actor, driver.proc.pid if driver.proc else -1)
                        if int(a["Pid"]) not in self.killed_pids]

            found = alive()
            while not found and time.monotonic() < deadline:
                time.sleep(0.5)
                found = alive()
            if not found:
                fault.skipped = f"no live {actor} actor"
                return
            victim = sorted(found, key=lambda a: a["ActorID"])[int(fault.params["pick"] * len(found))]
            fault.injected_at_s = time.monotonic() - started
            kill_actor(victim, how)
            self.killed_pids.add(int(victim["Pid"]))
            fault.outcome = {"actor": victim["ActorID"][:12], "pid": victim["Pid"],
                             "restarts_before": victim["NumRestarts"]}
        elif kind == "worker_node_removal":
            assert self.cluster is not None
            fault.injected_at_s = time.monotonic() - started
            fault.outcome = self.cluster.remove_worker(random.Random(fault.params["pick"]))
        elif kind == "driver_sigkill":
            if not driver.running():
                fault.skipped = "no driver running"
                return
            fault.injected_at_s = time.monotonic() - started
            pid = driver.sigkill()
            driver.resume()
            fault.outcome = {"killed_pid": pid, "resumed_pid": driver.proc.pid if driver.proc else None}
        elif kind in RATE_FAULTS:
            waited = wait_for_traffic(fake, lambda: self._driver_has_actors(driver))
            if waited is None:
                fault.skipped = f"no request to the endpoint within {TRAFFIC_WAIT_S:.0f} s"
                return
            name, rate = fault.params["fault"], fault.params["rate"]
            before = fake.stats()["faults"].get(name, 0)
            fault.injected_at_s = time.monotonic() - started
            window, served = fault.params["for_s"], 0
            fake.set_faults(rates={name: rate}, for_s=window)
            time.sleep(window)
            # Traffic comes in bursts (a round of requests, then none while the endpoint answers them): a window
            # that no request fell in is held open a little longer, so the fault is served at least once.
            while (served := fake.stats()["faults"].get(name, 0) - before) == 0 and window < fault.params["for_s"] \
                    + WINDOW_EXTENSION_S:
                fake.set_faults(rates={name: rate}, for_s=WINDOW_STEP_S)
                time.sleep(WINDOW_STEP_S)
                window += WINDOW_STEP_S
            fake.set_faults(rates={})
            fault.outcome = {"served": served, "window_s": window, "waited_for_traffic_s": round(waited, 1)}
            # A stalled reply is only a failed attempt once the client's read timeout cuts it: the next fault (a
            # driver kill, an actor kill) waits until then, or it would take the stalled requests with it unseen.
            fault.outcome["effect_until_s"] = round(time.monotonic() - started + effect_after_window(name), 1)
            time.sleep(effect_after_window(name) + 1.0)
        elif kind == "endpoint_outage":
            waited = wait_for_traffic(fake, lambda: self._driver_has_actors(driver))
            if waited is None:
                fault.skipped = f"no request to the endpoint within {TRAFFIC_WAIT_S:.0f} s"
                return
            before = fake.stats()["faults"].get("outage", 0)
            fault.injected_at_s = time.monotonic() - started
            fake.set_faults(outage_s=fault.params["outage_s"])
            time.sleep(fault.params["outage_s"] + 0.5)
            fault.outcome = {"cut_requests": self._stats_after_outage(fake).get("outage", 0) - before,
                             "waited_for_traffic_s": round(waited, 1)}
        elif kind in ENDPOINT_DOWN_S:
            self._endpoint_down(fault, driver, started, run_dir)
        elif kind == "chroma_restart":
            assert self.chroma is not None
            fault.injected_at_s = time.monotonic() - started
            fault.outcome = self.chroma.restart()
        else:
            raise ValueError(f"unknown fault kind {kind}")

    def _endpoint_down(self, fault: Fault, driver: Driver, started: float, run_dir: Path) -> None:
        """Kill or wedge one of the roles' endpoints (not the first) for `down_s`, bring it back, then watch the run's
        usage.json until it shows the endpoint ejected and, after it came back, sent its share again (re-admitted)."""
        index = fault.params["target"]
        target = self.fakes[index]
        url = target.base_url  # as the config names it; usage.json names it so too (no credentials in it)
        waited = wait_for_traffic(target, lambda: self._driver_has_actors(driver))
        if waited is None:
            fault.skipped = f"no request to endpoint {index} within {TRAFFIC_WAIT_S:.0f} s"
            return
        sent_before, ejections_before, _ = endpoint_usage(run_dir, url)
        fault.injected_at_s = time.monotonic() - started
        if fault.kind == "endpoint_killed":
            os.kill(target.process.pid, signal.SIGKILL)
            target.process.join(10)
            time.sleep(fault.params["down_s"])
            assert self.workload is not None
            self.fakes[index] = self.endpoint(self.workload, port=target.port)  # up again where the clients knew it
        else:
            os.kill(target.process.pid, signal.SIGSTOP)
            try:
                time.sleep(fault.params["down_s"])
            finally:
                os.kill(target.process.pid, signal.SIGCONT)
        back = time.monotonic()
        sent_back, _, all_back = endpoint_usage(run_dir, url)
        sent, ejections, sent_all = sent_back, ejections_before, all_back
        readmitted_after: float | None = None
        while time.monotonic() - back < READMIT_WAIT_S and driver.running():
            sent, ejections, sent_all = endpoint_usage(run_dir, url)
            if ejections > ejections_before and readmitted(sent - sent_back, sent_all - all_back):
                readmitted_after = time.monotonic() - back
                break
            time.sleep(0.5)
        fault.outcome = {"endpoint": url, "down_s": round(back - started - fault.injected_at_s, 1),
                         "ejections": ejections - ejections_before, "sent_while_down": sent_back - sent_before,
                         "sent_after_back": sent - sent_back, "sent_to_all_after_back": sent_all - all_back,
                         "readmitted_after_s": None if readmitted_after is None else round(readmitted_after, 1),
                         "waited_for_traffic_s": round(waited, 1)}
        if readmitted_after is None and not driver.running():
            fault.not_judged = f"the driver ended {time.monotonic() - back:.1f} s after the endpoint came back, " \
                               f"before its re-admission could show"

    @staticmethod
    def _driver_has_actors(driver: Driver) -> bool:
        """Whether the current driver's evaluators are up: requests then come from it, not a killed driver's."""
        return driver.running() and bool(run_actors("evaluator", driver.proc.pid if driver.proc else -1))

    @staticmethod
    def _stats_after_outage(fake: Any) -> dict[str, int]:
        for _ in range(100):
            with contextlib.suppress(OSError):
                return fake.stats()["faults"]
            time.sleep(0.2)
        return {}


# --- the checks ---------------------------------------------------------------------------------------------------


def step_records(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    doc = json.loads((run_dir / "results.json").read_text())
    return {name: entry["steps"] for name, entry in doc["tasks"].items()}


def checkpoint_steps(run_dir: Path) -> dict[str, list[int]]:
    out = {}
    for path in sorted((run_dir / "checkpoints").glob("*.jsonl")):
        out[path.stem] = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]
    return out


def compare(undisturbed: Path, disturbed: Path) -> dict[str, Any]:
    a, b = step_records(undisturbed), step_records(disturbed)
    differing = sorted(t for t in a if a[t] != b.get(t))
    steps = checkpoint_steps(disturbed)
    bad_checkpoints = {t: s for t, s in steps.items() if s != list(range(len(s)))}
    expected = {t: len(s) + 1 for t, s in a.items()}  # step 0 (the initial prompt) and each step
    lost = {t: expected[t] - len(s) for t, s in steps.items() if 0 < len(s) < expected.get(t, 0)}
    return {"tasks": len(a), "steps": sum(len(s) for s in a.values()), "same_steps": not differing and set(a) == set(b),
            "differing_tasks": differing[:10], "checkpoints_each_step_once": not bad_checkpoints and len(steps) == len(a),
            "bad_checkpoints": {t: s[:20] for t, s in list(bad_checkpoints.items())[:5]}, "lost_steps": lost}


_LOG_EVENT = re.compile(r"\b(llm_retry|llm_gave_up|actor_started|actor_lost_retrying|trajectory_memory_ready|"
                        r"chroma_server_unreachable_retrying)\b")
_KV = re.compile(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)")


def log_evidence(session_logs: Path, run_dir: Path) -> dict[str, Any]:
    """What gpo-ray's own logs say happened: retries by error kind (the actors' lines in Ray's worker logs, and
    the driver's), actor starts and restarts, resumes; and the usage's errors by kind."""
    retries: Counter[str] = Counter()
    events: Counter[str] = Counter()
    restarts: Counter[str] = Counter()
    for path in [*session_logs.glob("worker-*.out"), *session_logs.glob("worker-*.err"),
                 *(run_dir / "logs").glob("*.jsonl")]:
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                m = _LOG_EVENT.search(line)
                if not m:
                    continue
                event = m.group(1)
                fields = dict((k, v.strip("'\"")) for k, v in _KV.findall(line))
                if line.startswith("{"):
                    with contextlib.suppress(ValueError):
                        fields = {k: str(v) for k, v in json.loads(line).items()}
                events[event] += 1
                if event in ("llm_retry", "llm_gave_up"):
                    retries[fields.get("error_kind", "?")] += 1
                if event == "actor_started" and fields.get("restarted") == "True":
                    restarts[fields.get("actor", "?")] += 1
    driver_events: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in (run_dir / "logs" / "driver.jsonl").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                driver_events[json.loads(line).get("event", "?")] += 1
    usage_errors: Counter[str] = Counter()
    with contextlib.suppress(OSError, ValueError):
        for role in json.loads((run_dir / "usage.json").read_text()).values():
            if isinstance(role, dict):
                usage_errors.update(role.get("errors", {}))
    return {"retries_by_kind": dict(retries), "events": dict(events), "actor_restarts_logged": dict(restarts),
            "driver_events": {k: driver_events[k] for k in ("run_started", "run_resumed", "run_finished",
                                                             "run_failed", "actor_lost_retrying")},
            "usage_errors": dict(usage_errors)}


def judge(schedule: list[Fault], evidence: dict[str, Any], stops: list[dict[str, Any]]) -> None:
    """Per fault: seen (the logs or the usage show it) and recovered (the run went on by itself: a step was
    checkpointed after it, and the driver did not stop on its own before the next fault).

    An endpoint fault is seen when gpo-ray's logs (or usage) count at least as many failed attempts of its kind as
    the endpoint served in the windows of that kind. A failed attempt is counted by the client that made it, when
    it fails: a stalled reply only after the read timeout. A driver killed (or stopping) before that takes the
    stalled requests' clients with it, so nobody can have seen them: such a fault is not judged, and says why."""
    logged, in_usage = Counter(evidence.get("retries_by_kind", {})), Counter(evidence.get("usage_errors", {}))
    restarts = Counter(evidence.get("actor_restarts_logged", {}))
    resumes = evidence.get("driver_events", {}).get("run_resumed", 0)
    injected = [f for f in schedule if f.injected_at_s is not None]
    kills = [f.injected_at_s for f in injected if f.kind == "driver_sigkill"]
    ends = sorted([*kills, *(s["at_s"] for s in stops)])
    for i, fault in enumerate(injected):
        end = injected[i + 1].injected_at_s if i + 1 < len(injected) else math.inf
        stopped = any(fault.injected_at_s <= s["at_s"] < end for s in stops)
        fault.recovered = fault.next_step_s is not None and not stopped
        if fault.kind in RATE_FAULTS and fault.outcome.get("served", 0) == 0:
            fault.seen, fault.skipped = None, "no request fell in the window"
        elif fault.kind in RATE_FAULTS:
            until = fault.outcome.get("effect_until_s", fault.injected_at_s + fault.params["for_s"]
                                      + effect_after_window(fault.params["fault"]))
            cut = next((t for t in ends if fault.injected_at_s <= t < until), None)
            if cut is not None:
                fault.not_judged = f"cut short: the driver was killed or stopped at {cut:.1f} s, before the " \
                                   f"endpoint's faults of this window could fail in a client (until {until:.1f} s)"
    # Endpoint faults by kind: failed attempts counted in the logs (or usage) against those served in the windows.
    served: Counter[str] = Counter()
    for fault in injected:
        if fault.kind in RATE_FAULTS and fault.skipped is None and fault.not_judged is None:
            served[fault.params["fault"]] += fault.outcome.get("served", 0)
    kills_by_actor = Counter(f.kind.split("_")[0] for f in injected if f.kind in ACTOR_KILLS)
    for fault in injected:
        kind = fault.kind
        if kind in RATE_FAULTS:
            if fault.skipped is None and fault.not_judged is None:
                error = ERROR_KIND[fault.params["fault"]]
                fault.seen = max(logged[error], in_usage[error]) >= served[fault.params["fault"]]
        elif kind == "endpoint_outage":
            fault.seen = max(logged["connection"], in_usage["connection"]) > 0
        elif kind in ENDPOINT_DOWN_S:  # usage.json: ejected, and after it came back sent its share again
            if fault.not_judged is None:
                fault.seen = fault.outcome["ejections"] > 0 and fault.outcome["readmitted_after_s"] is not None
        elif kind in ACTOR_KILLS:  # as many logged restarts of that actor kind as kills of it (node removals add)
            actor = kind.split("_")[0]
            fault.seen = restarts[actor] >= kills_by_actor[actor]
        elif kind == "worker_node_removal":
            fault.seen = sum(restarts.values()) > 0
        elif kind == "driver_sigkill":
            fault.seen = resumes > 0
        elif kind == "chroma_restart":
            fault.seen = evidence.get("events", {}).get("chroma_server_unreachable_retrying", 0) > 0


def endpoint_faults_seen(schedule: list[Fault], evidence: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per endpoint fault: served by the endpoint (in judged windows) and failed attempts in the logs and usage."""
    out: dict[str, dict[str, int]] = {}
    for fault in schedule:
        if fault.kind in RATE_FAULTS and fault.injected_at_s is not None:
            error = ERROR_KIND[fault.params["fault"]]
            row = out.setdefault(fault.params["fault"], {
                "served": 0, "served_cut_short": 0, "logged": evidence.get("retries_by_kind", {}).get(error, 0),
                "usage": evidence.get("usage_errors", {}).get(error, 0)})
            row["served_cut_short" if fault.not_judged else "served"] += fault.outcome.get("served", 0)
    return out


def table(schedule: list[Fault]) -> list[dict[str, Any]]:
    rows = []
    for kind in sorted({f.kind for f in schedule}):
        mine = [f for f in schedule if f.kind == kind]
        done = [f for f in mine if f.injected_at_s is not None and f.skipped is None]
        waits = [f.next_step_s for f in done if f.next_step_s is not None]
        rows.append({"kind": kind, "scheduled": len(mine), "injected": len(done), "skipped": len(mine) - len(done),
                     "recovered": sum(bool(f.recovered) for f in done), "seen": sum(bool(f.seen) for f in done),
                     "not_judged": sum(f.not_judged is not None for f in done),
                     "next_step_median_s": statistics.median(waits) if waits else None,
                     "next_step_max_s": max(waits) if waits else None})
    return rows


def print_table(report: dict[str, Any]) -> None:
    print(f"\nseed {report['seed']}, {report['duration_s']:.0f} s of faults, {report['workload']}")
    print(f"{'fault':26s} {'scheduled':>9s} {'injected':>8s} {'recovered':>9s} {'seen':>5s} {'not judged':>10s} "
          f"{'next step (median / max)':>26s}")
    for r in report["table"]:
        med = "-" if r["next_step_median_s"] is None else f"{r['next_step_median_s']:.1f} s"
        mx = "-" if r["next_step_max_s"] is None else f"{r['next_step_max_s']:.1f} s"
        print(f"{r['kind']:26s} {r['scheduled']:9d} {r['injected']:8d} {r['recovered']:9d} {r['seen']:5d} "
              f"{r['not_judged']:10d} {med + ' / ' + mx:>26s}")
    t = report["totals"]
    print(f"{'all':26s} {t['scheduled']:9d} {t['injected']:8d} {t['recovered']:9d} {t['seen']:5d} {t['not_judged']:10d}")
    for f in report["faults"]:
        if f["skipped"] or f["not_judged"]:
            why = f"skipped: {f['skipped']}" if f["skipped"] else f"not judged: {f['not_judged']}"
            print(f"  {f['at_s']:6.1f}s {f['kind']}: {why}")
    for f in report["faults"]:
        if f["kind"] in ENDPOINT_DOWN_S and f["injected_at_s"] is not None:
            o = f["outcome"]
            back = "not seen" if o["readmitted_after_s"] is None else f"{o['readmitted_after_s']:.1f} s"
            print(f"  {f['at_s']:6.1f}s {f['kind']} {o['endpoint']}: down {o['down_s']:.1f} s, ejected "
                  f"{o['ejections']} times in usage.json, re-admitted after it came back: {back} "
                  f"({o['sent_after_back']} of the {o['sent_to_all_after_back']} requests sent to it "
                  f"since)")
    for name, row in report.get("endpoint_faults_seen", {}).items():
        print(f"  endpoint {name}: served {row['served']} (+{row['served_cut_short']} cut short), failed attempts "
              f"logged {row['logged']}, in usage.json {row['usage']}")
    c, w = report["comparison"], report["wall_s"]
    print(f"\nwall: undisturbed {w['undisturbed']:.0f} s, disturbed {w['disturbed']:.0f} s, lost {w['lost']:.0f} s; "
          f"driver stops not caused by the schedule: {len(report['disturbed']['stops'])}")
    print(f"same prompts and scores per step: {c['same_steps']} ({c['tasks']} tasks, {c['steps']} steps); "
          f"each step checkpointed once: {c['checkpoints_each_step_once']}")
    left = report["left_behind"]
    print(f"left behind: {len(left['alive'])} of {left['processes_seen']} processes, "
          f"{len(left['ports_taken'])} of {len(left['ports_seen'])} ports")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cli.quiet_logging()
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 100_000)
    print(f"chaos soak: seed {seed}, {args.duration:.0f} s of faults", flush=True)
    work = Path(tempfile.mkdtemp(prefix=f"gpo-chaos-{seed}-"))
    soak = Soak(args, seed, work)
    kinds = BASE_KINDS + (["chroma_restart"] if args.chroma_server else [])
    schedule = make_schedule(soak.rng, args.duration, kinds)
    print("schedule: " + ", ".join(f"{f.at_s:.0f}s {f.kind}" for f in schedule), flush=True)
    report: dict[str, Any] = {"seed": seed, "argv": sys.argv[1:] if argv is None else list(argv),
                              "duration_s": args.duration, "cpus": os.cpu_count(), "chroma_server": args.chroma_server}
    started = time.perf_counter()
    import ray

    session_logs: Path | None = None
    try:
        soak.cluster = SimulatedCluster()
        ray.init(address=soak.cluster.address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False, logging_level="ERROR")
        session_logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
        if args.chroma_server:
            soak.chroma = ChromaServer(work / "chroma-server", work / "chroma.log")
            soak.chroma.start()
        workload = load_workload(args.tasks, data_dir=args.data_dir, scratch=work)
        epochs = args.epochs or epochs_for(args.duration, args.latency)
        report["workload"] = f"{len(workload.tasks)} tasks ({workload.source}), {epochs} epochs, " \
                             f"{args.latency:g} s per request"
        print(f"workload: {report['workload']}; undisturbed run ...", flush=True)
        report["undisturbed"] = soak.undisturbed(workload, epochs)
        print(f"  {report['undisturbed']['wall_s']:.0f} s; disturbed run ...", flush=True)
        report["disturbed"] = soak.disturbed(workload, epochs, schedule)
        print(f"  {report['disturbed']['wall_s']:.0f} s", flush=True)
    finally:
        with contextlib.suppress(Exception):
            ray.shutdown()
        if soak.chroma is not None:
            soak.chroma.stop()
        if soak.cluster is not None:
            soak.cluster.shutdown()
    disturbed, undisturbed = Path(report["disturbed"]["run_dir"]), Path(report["undisturbed"]["run_dir"])
    report["comparison"] = compare(undisturbed, disturbed)
    evidence = log_evidence(session_logs, disturbed) if session_logs else {}
    report["evidence"] = evidence
    judge(schedule, evidence, report["disturbed"]["stops"])
    report["faults"] = [asdict(f) for f in schedule]
    report["table"] = table(schedule)
    report["totals"] = {k: sum(r[k] for r in report["table"])
                        for k in ("scheduled", "injected", "skipped", "recovered", "seen", "not_judged")}
    report["endpoint_faults_seen"] = endpoint_faults_seen(schedule, evidence)
    report["wall_s"] = {"undisturbed": report["undisturbed"]["wall_s"], "disturbed": report["disturbed"]["wall_s"],
                        "lost": report["disturbed"]["wall_s"] - report["undisturbed"]["wall_s"]}
    for run in ("undisturbed", "disturbed"):
        report[run]["endpoint"] = {k: report[run]["endpoint"].get(k) for k in ("requests", "completed", "faults",
                                                                                "status", "duplicates",
                                                                                "requests_per_endpoint")}
    time.sleep(2)  # the cluster's processes exit on their own after shutdown's signals
    deadline = time.monotonic() + 60
    while (left := soak.footprint.left_behind())["alive"] and time.monotonic() < deadline:
        time.sleep(1)
    report["left_behind"] = left
    report["fake_ports"], report["chroma_port"] = soak.fake_ports, soak.chroma.port if soak.chroma else None
    print_table(report)
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"scratch kept: {work}")
    out = args.out or cli.RESULTS / f"chaos-{seed}.json"
    cli.finish(report, out, started)
    ok = (report["comparison"]["same_steps"] and report["comparison"]["checkpoints_each_step_once"]
          and not left["alive"] and not left["ports_taken"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
