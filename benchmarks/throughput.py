"""gpo-ray against the endpoint's physical limit and against the paper's loop, measured in one run.

    .venv/bin/python -m benchmarks.throughput                 # defaults: a few minutes on 2 cores
    .venv/bin/python -m benchmarks.throughput --tasks 9 --no-scaling --out /tmp/t.json

The fake endpoint runs in its own process with a fixed latency per request and a fixed number of
concurrent slots, so its capacity (slots / latency, calls per second) is the limit nobody can beat.
The workload is BBH-shaped: the 27 BIG-Bench-Hard tasks of the shared GPO data (their real splits)
when present, else 27 synthetic tasks with the same split sizes. Every figure below comes from this
one process run, so machine noise hits all sides alike; compare ratios, not seconds across runs.

Reported (table on stdout, JSON to --out):
- utilization: calls/s divided by capacity, over the whole run and over the endpoint's active window,
  and per phase (generation = optimizer calls, scoring = task-model calls);
- the sequential reference optimizer (tasks in series; a step's calls concurrent) and the paper's loop
  (one call after another) on the same endpoint, tasks and calls, and the speed-up ratios;
- orchestration cost: CPU seconds of the driver and every actor process per LLM call;
- scaling: utilization and wall time as endpoint slots, evaluator actors and tasks grow;
- memory: peak resident memory of the driver and of the actor processes, per task;
- adaptive evaluation on the shared BBH data with the scripted task model: calls saved, and in how many
  steps it chose a different candidate than full evaluation of the same candidates would have.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_ray.config import LLMRoleConfig, OptimizerSettings, RunConfig, TaskSource
from gpo_ray.core.evaluation import TaskModelParams, mean
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task
from gpo_ray.core.reference import InProcessServices, optimize_sequential
from gpo_ray.core.selection import select_next
from gpo_ray.core.types import ScoredCandidate
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.stack import build_client
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Task
from gpo_ray.testing import FakeLLMConfig, ProcessFake, ScriptedLLM, answer_key_from_examples

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gpo"
BBH_SPLITS = {"train": 48, "eval": 48, "test": 144}  # sizes like the paper's BBH splits
SKILLS = {"step by step": 0.3, "carefully": 0.2, "each option": 0.15}
PHRASES = ["Think step by step.", "Read each option carefully.", "Be concise.", "Check each option.",
           "Work carefully.", "Answer directly."]


# --- the endpoint, in its own process (gpo_ray.testing.ProcessFake) ---------------------------------------

def endpoint_capacity(config: FakeLLMConfig) -> float:
    """Calls per second the endpoint can serve at most: its slots over its (mean) latency."""
    latency = float(config.latency_s) if not isinstance(config.latency_s, tuple) else sum(config.latency_s) / 2
    return config.concurrency / latency if latency > 0 else float("inf")


# --- the workload ---------------------------------------------------------------------------------------

def _synthetic_task(folder: Path, *, seed: int) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in {**BBH_SPLITS, "format": 3}.items():
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(n):
                a, b = rng.randint(2, 999), rng.randint(2, 999)
                f.write(json.dumps({"input": f"What is {a} + {b}? (task {seed})", "target": str(a + b)}) + "\n")


@dataclass
class Workload:
    tasks: list[Task]
    task_names: list[str]
    data_dir: Path | None
    sources: list[TaskSource]
    source: str  # "shared BBH" or "synthetic BBH-shaped"

    def subset(self, n: int) -> Workload:
        return Workload(self.tasks[:n], self.task_names[:n], self.data_dir, self.sources, self.source)


def load_workload(n_tasks: int, *, data_dir: Path | None, scratch: Path) -> Workload:
    if data_dir is not None and (data_dir / "BIG-Bench-Hard").is_dir():
        tasks = resolve_tasks(["bbh/*"], data_dir=data_dir, sources=[])[:n_tasks]
        return Workload(tasks, [t.name for t in tasks], data_dir, [], f"shared BBH ({data_dir})")
    sources = []
    for i in range(n_tasks):
        folder = scratch / "data" / f"t{i:02d}"
        _synthetic_task(folder, seed=i)
        sources.append(TaskSource(name=f"bbh_shaped/t{i:02d}", format="jsonl", path=folder, metric="numeric"))
    tasks = resolve_tasks(["bbh_shaped/*"], data_dir=None, sources=sources)
    return Workload(tasks, [t.name for t in tasks], None, sources, "synthetic BBH-shaped (shared data absent)")


def endpoint_config(workload: Workload, *, latency: float, slots: int, timeline: bool = True) -> FakeLLMConfig:
    examples = [e for t in workload.tasks for e in (*t.train, *t.eval, *t.test)]
    return FakeLLMConfig(latency_s=latency, concurrency=slots, answer_key=answer_key_from_examples(examples),
                         skill_phrases=SKILLS, optimizer_phrases=PHRASES, base_accuracy=0.3, record_timeline=timeline)


def run_config(workload: Workload, base_url: str, root: Path, args: argparse.Namespace, *, evaluators: int,
               optimizer: dict[str, Any] | None = None) -> RunConfig:
    role = LLMRoleConfig(base_url=base_url, model="fake-llm", max_tokens=64, max_in_flight=args.max_in_flight,
                         timeout_s=60)
    opt = dict(epochs=args.epochs, batch_size=args.batch_size, candidates=args.candidates, seed=3,
               train_limit=args.train_limit, eval_limit=args.eval_limit, evaluate_test=False,
               initial_prompt="Answer the question.")
    opt.update(optimizer or {})
    return RunConfig(
        tasks=workload.task_names, data_dir=workload.data_dir, task_sources=workload.sources,
        task_model=role, optimizer_model=role.model_copy(update={"temperature": 1.0}), optimizer=opt,
        cluster={"num_refiners": args.refiners, "num_evaluators": evaluators,
                 "evaluator_max_in_flight": args.evaluator_max_in_flight},
        run_dir=root / f"run-{time.monotonic_ns()}", cache=False,
    )


# --- measuring ------------------------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    """user + system CPU seconds of a process, from /proc (Linux), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime (fields 14 and 15 of stat)


def _peak_rss(pid: int) -> int:
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
        total = _cpu_seconds(pid)
        if total is None:
            return
        self.cpu_start.setdefault(pid, total)
        self.cpu[pid] = total
        self.rss[pid] = max(self.rss.get(pid, 0), _peak_rss(pid))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            for pid in list(self.pids):
                self._sample(pid)

    def __enter__(self) -> ProcessSampler:
        self._sample(os.getpid())
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
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
    """`started`: time.monotonic() when the run began (the endpoint's clock is the same on one machine), to tell
    start-up (actors, models) and the tail from the endpoint's active window."""
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


def distributed_run(workload: Workload, endpoint: ProcessFake, root: Path, args: argparse.Namespace, *,
                    evaluators: int) -> dict[str, Any]:
    import ray

    from gpo_ray.api import optimize

    config = run_config(workload, endpoint.base_url, root, args, evaluators=evaluators)
    endpoint.reset()
    with ProcessSampler() as sampler:
        def started(actors: Any) -> None:
            for kind, handles in (("memory", [actors.memory]), ("refiner", actors.refiners),
                                  ("evaluator", actors.evaluators)):
                for pid in ray.get([h.pid.remote() for h in handles]):
                    sampler.add(pid, kind)

        t0, t0_mono = time.perf_counter(), time.monotonic()
        results = optimize(config, on_actors_started=started)
        wall = time.perf_counter() - t0
    stats = endpoint.stats()
    calls = stats["completed"]
    actor_cpu = sampler.cpu_seconds() - sampler.cpu_seconds("driver")
    return {
        "tasks": len(workload.tasks), "slots": endpoint.config.concurrency, "evaluators": evaluators, "wall_s": wall,
        "utilization": utilization(endpoint.timeline(), capacity=endpoint_capacity(endpoint.config), wall=wall,
                                   started=t0_mono),
        "cpu_s": {"driver": sampler.cpu_seconds("driver"), "actors": actor_cpu,
                  **{k: sampler.cpu_seconds(k) for k in ("memory", "refiner", "evaluator")}},
        "cpu_ms_per_call": 1000 * (sampler.cpu_seconds("driver") + actor_cpu) / max(calls, 1),
        "peak_rss_mb": {k: sampler.peak_rss(k) / 2**20 for k in ("driver", "memory", "refiner", "evaluator")},
        "peak_in_service": stats["peak_in_service"],
        "results": {n: r.to_dict() for n, r in results.tasks.items()},
    }


def sequential_run(workload: Workload, endpoint: ProcessFake, args: argparse.Namespace, *, in_flight: int,
                   root: Path) -> dict[str, Any]:
    from gpo_ray.llm.embedding import MiniLMEmbedder

    config = run_config(workload, endpoint.base_url, root, args, evaluators=1)
    role = config.task_model.model_copy(update={"max_in_flight": in_flight})
    counters = UsageCounters()
    opt = build_client(role.model_copy(update={"temperature": 1.0}), role_name="optimizer",
                       base_url=endpoint.base_url, model="fake-llm", cache=None, counters=counters)
    task_llm = build_client(role, role_name="task_model", base_url=endpoint.base_url, model="fake-llm",
                            cache=None, counters=counters)
    params = TaskModelParams(placement=config.optimizer.placement, temperature=0.0, max_tokens=64,
                             seed=config.optimizer.seed)
    embedder = MiniLMEmbedder()
    embedder.embed(["warm up"])
    endpoint.reset()
    with ProcessSampler() as sampler:
        t0 = time.perf_counter()
        async def run() -> dict[str, Any]:
            try:
                return await optimize_sequential(
                    workload.tasks, settings=config.optimizer, optimizer_llm=opt, task_llm=task_llm,
                    embed=embedder.embed, task_params=params, optimizer_temperature=1.0, optimizer_max_tokens=64)
            finally:
                await opt.aclose()
                await task_llm.aclose()

        results = asyncio.run(run())
        wall = time.perf_counter() - t0
    calls = endpoint.stats()["completed"]
    return {"tasks": len(workload.tasks), "in_flight": in_flight, "wall_s": wall, "calls": calls,
            "utilization": utilization(endpoint.timeline(), capacity=endpoint_capacity(endpoint.config), wall=wall),
            "cpu_ms_per_call": 1000 * sampler.cpu_seconds() / max(calls, 1),
            "results": {n: r.to_dict() for n, r in results.items()}}


# --- adaptive evaluation (in-process scripted models: no endpoint needed) --------------------------------

async def _adaptive_task(task: Task, settings: OptimizerSettings, full_settings: OptimizerSettings,
                         config: FakeLLMConfig) -> dict[str, Any]:
    models = ScriptedLLM(config)
    services = InProcessServices(optimizer_llm=models, task_llm=models, embed=None, task_params=TaskModelParams())
    result = await GPOTaskLoop(task, settings=settings, services=services, structured=False).run()
    # Counterfactual per step: full evaluation of the very candidates the adaptive step had.
    referee = ScriptedLLM(config)
    judge = InProcessServices(optimizer_llm=None, task_llm=referee, embed=None, task_params=TaskModelParams())
    eval_examples = task.eval[: settings.eval_limit] if settings.eval_limit else task.eval
    chosen_before = [result.initial_prompt]
    differs = 0
    for s in result.steps:
        if s.candidates:
            full = await judge.score(task, [c.prompt for c in s.candidates], eval_examples)
            rescored = [ScoredCandidate(c.prompt, mean(sc), c.edit_distance, len(sc))
                        for c, sc in zip(s.candidates, full, strict=True)]
            pick = select_next(rescored, chosen_before=chosen_before)
            differs += int(pick is not None and pick.prompt != s.prompt)
        chosen_before.append(s.prompt)
    full_models = ScriptedLLM(config)
    full_services = InProcessServices(optimizer_llm=full_models, task_llm=full_models, embed=None,
                                      task_params=TaskModelParams())
    full_result = await GPOTaskLoop(task, settings=full_settings, services=full_services, structured=False).run()
    return {
        "steps": len(result.steps),
        "steps_choice_differs": differs,
        "scoring_calls": sum(s.counts["scoring_calls"] for s in result.steps),
        "scoring_calls_full": sum(s.counts["scoring_calls_full"] for s in result.steps),
        "task_calls_adaptive_run": models.calls["task"],
        "task_calls_full_run": full_models.calls["task"],
        "best_eval_adaptive": result.best_eval_score,
        "best_eval_full": full_result.best_eval_score,
    }


def adaptive_benchmark(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    config = endpoint_config(workload, latency=0.0, slots=64, timeline=False)
    base = dict(epochs=args.epochs, batch_size=args.batch_size, candidates=8, seed=3, train_limit=args.train_limit,
                evaluate_test=False, initial_prompt="Answer the question.", retrieval="recency",
                candidate_scoring="eval")
    full = OptimizerSettings(**base)
    adaptive = OptimizerSettings(**base, adaptive_evaluation={"enabled": True, "first_round": args.first_round,
                                                              "eta": args.eta})

    async def all_tasks() -> list[dict[str, Any]]:
        return [await _adaptive_task(t, adaptive, full, config) for t in workload.tasks]

    per_task = asyncio.run(all_tasks())
    total = {k: sum(r[k] for r in per_task) for k in ("steps", "steps_choice_differs", "scoring_calls",
                                                       "scoring_calls_full", "task_calls_adaptive_run",
                                                       "task_calls_full_run")}
    return {
        "source": workload.source, "tasks": len(per_task), "first_round": args.first_round, "eta": args.eta,
        "candidates": 8, **total,
        "scoring_calls_saved": 1 - total["scoring_calls"] / max(total["scoring_calls_full"], 1),
        "mean_best_eval_adaptive": mean([r["best_eval_adaptive"] for r in per_task]),
        "mean_best_eval_full": mean([r["best_eval_full"] for r in per_task]),
    }


# --- the report -------------------------------------------------------------------------------------------

def _strip(run: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in run.items() if k != "results"}


def print_report(report: dict[str, Any]) -> None:
    m, seq = report["main"], report["sequential_reference"]
    u = m["utilization"]
    print(f"\nworkload: {report['workload']['tasks']} tasks, {report['workload']['source']}; endpoint "
          f"{report['endpoint']['slots']} slots x {report['endpoint']['latency_s'] * 1000:.0f} ms = "
          f"{report['endpoint']['capacity']:.0f} calls/s")
    print(f"{'':38}{'wall s':>9}{'calls':>8}{'util':>7}{'util*':>7}{'gen':>7}{'score':>7}{'CPU ms/call':>12}")
    rows = [("gpo-ray (distributed)", m), ("sequential reference", seq)]
    if report.get("paper_loop"):
        rows.append(("paper's loop (one call at a time)", report["paper_loop"]))
    for name, r in rows:
        ru = r["utilization"]
        print(f"{name:38}{r['wall_s']:9.1f}{ru['calls']:8d}{ru['whole_run']:7.2f}{ru['active_window']:7.2f}"
              f"{ru['generation']:7.2f}{ru['scoring']:7.2f}{r['cpu_ms_per_call']:12.2f}")
    print("util = calls/s / capacity over the whole run; util* = over the endpoint's active window")
    print(f"speed-up vs sequential reference: {report['speedup_vs_sequential']:.1f}x; vs the paper's loop: "
          f"{report['speedup_vs_paper_loop']:.1f}x ({report['paper_loop_basis']}); identical results: "
          f"{report['identical_results']}")
    print(f"orchestration CPU: {m['cpu_ms_per_call']:.2f} ms per call (" + ", ".join(
        f"{k} {m['cpu_s'][k]:.1f} s" for k in ("driver", "memory", "refiner", "evaluator")) + f" for {u['calls']} calls)")
    print(f"start-up (optimize() to the first request) {u['startup_s']:.1f} s, tail {u['tail_s']:.1f} s, "
          f"endpoint active {u['active_window_s']:.1f} s")
    print("peak RSS MB: " + ", ".join(f"{k} {v:.0f}" for k, v in m["peak_rss_mb"].items())
          + f"; per task {report['memory_per_task_mb']:.1f}")
    if report.get("scaling"):
        print(f"\n{'scaling':10}{'tasks':>6}{'slots':>6}{'evals':>6}{'wall s':>8}{'util':>7}{'util*':>7}{'ms/call':>9}")
        for r in report["scaling"]:
            ru = r["utilization"]
            print(f"{r['axis']:10}{r['tasks']:6d}{r['slots']:6d}{r['evaluators']:6d}{r['wall_s']:8.1f}"
                  f"{ru['whole_run']:7.2f}{ru['active_window']:7.2f}{r['cpu_ms_per_call']:9.2f}")
    if report.get("adaptive"):
        a = report["adaptive"]
        print(f"\nadaptive evaluation ({a['tasks']} tasks, {a['candidates']} candidates, first round {a['first_round']}, "
              f"eta {a['eta']}): scoring calls {a['scoring_calls']} vs {a['scoring_calls_full']} full "
              f"({100 * a['scoring_calls_saved']:.0f}% saved); choice differs in {a['steps_choice_differs']} of "
              f"{a['steps']} steps; mean best eval {a['mean_best_eval_adaptive']:.3f} vs {a['mean_best_eval_full']:.3f}")


def _csv_ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.throughput", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=27, help="BBH tasks in the main run (27 = all)")
    p.add_argument("--latency", type=float, default=0.1, help="endpoint seconds per request")
    p.add_argument("--slots", type=int, default=64, help="endpoint concurrent requests")
    p.add_argument("--evaluators", type=int, default=2)
    p.add_argument("--refiners", type=int, default=2)
    p.add_argument("--evaluator-max-in-flight", type=int, default=64)
    p.add_argument("--max-in-flight", type=int, default=64, help="per actor client limit")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--train-limit", type=int, default=None)
    p.add_argument("--eval-limit", type=int, default=16)
    p.add_argument("--paper-loop-tasks", type=int, default=1,
                   help="tasks the one-call-at-a-time loop runs on (its time for all tasks is projected per call "
                        "unless this equals --tasks)")
    p.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--scaling-slots", type=_csv_ints, default=[1, 4, 16, 64])
    p.add_argument("--scaling-evaluators", type=_csv_ints, default=[1, 2, 4, 8])
    p.add_argument("--scaling-tasks", type=_csv_ints, default=[3, 9, 27])
    p.add_argument("--scaling-train-limit", type=int, default=16, help="train examples per task in scaling runs")
    p.add_argument("--adaptive", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--first-round", type=int, default=8)
    p.add_argument("--eta", type=int, default=2)
    p.add_argument("--data-dir", type=Path, default=SHARED_DATA)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/throughput.json"))
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    import ray

    from gpo_ray.llm.embedding import MiniLMEmbedder
    from gpo_ray.logs import configure_logging

    args = parse_args(argv)
    configure_logging(mode="quiet", log_file=None, secrets=[])
    started = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, configure_logging=False,
             runtime_env={"env_vars": {"TOKENIZERS_PARALLELISM": "false"}})
    MiniLMEmbedder().embed(["warm up"])
    report: dict[str, Any] = {"argv": sys.argv[1:] if argv is None else list(argv), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        workload = load_workload(args.tasks, data_dir=args.data_dir, scratch=root)
        endpoint = ProcessFake(endpoint_config(workload, latency=args.latency, slots=args.slots))
        try:
            report["workload"] = {"tasks": len(workload.tasks), "source": workload.source}
            report["endpoint"] = {"slots": args.slots, "latency_s": args.latency,
                                  "capacity": endpoint_capacity(endpoint.config)}
            settings = run_config(workload, endpoint.base_url, root, args, evaluators=1).optimizer
            plans = [plan_task(t, settings, optimizer_max_tokens=64, task_max_tokens=64) for t in workload.tasks]
            report["planned_calls"] = sum(p.task_model_calls + p.optimizer_calls for p in plans)
            print(f"main run: {len(workload.tasks)} tasks, ~{report['planned_calls']} calls planned", flush=True)
            main_run = distributed_run(workload, endpoint, root, args, evaluators=args.evaluators)
            print(f"  distributed {main_run['wall_s']:.1f} s", flush=True)
            seq = sequential_run(workload, endpoint, args, in_flight=args.max_in_flight, root=root)
            print(f"  sequential reference {seq['wall_s']:.1f} s", flush=True)
            paper_tasks = min(args.paper_loop_tasks, len(workload.tasks))
            paper = sequential_run(workload.subset(paper_tasks), endpoint, args, in_flight=1, root=root)
            print(f"  paper's loop on {paper_tasks} task(s) {paper['wall_s']:.1f} s", flush=True)
            report["main"] = _strip(main_run)
            report["sequential_reference"] = _strip(seq)
            report["paper_loop"] = _strip(paper)
            report["identical_results"] = main_run["results"] == seq["results"]
            report["speedup_vs_sequential"] = seq["wall_s"] / main_run["wall_s"]
            main_calls = main_run["utilization"]["calls"]
            if paper_tasks == len(workload.tasks):
                paper_wall, basis = paper["wall_s"], "measured on all tasks"
            else:
                paper_wall = paper["wall_s"] / max(paper["calls"], 1) * main_calls
                basis = (f"measured on {paper_tasks} task(s): {paper['wall_s'] / max(paper['calls'], 1) * 1000:.0f} ms "
                         f"per call x {main_calls} calls")
            report["paper_loop_projected_wall_s"] = paper_wall
            report["paper_loop_basis"] = basis
            report["speedup_vs_paper_loop"] = paper_wall / main_run["wall_s"]
            actor_peak = sum(main_run["peak_rss_mb"][k] for k in ("memory", "refiner", "evaluator"))
            report["memory_per_task_mb"] = (main_run["peak_rss_mb"]["driver"] + actor_peak) / len(workload.tasks)
        finally:
            endpoint.close()
        if args.scaling:
            report["scaling"] = scaling_runs(workload, root, args)
        if args.adaptive:
            shared = load_workload(27, data_dir=args.data_dir, scratch=root / "adaptive")
            report["adaptive"] = adaptive_benchmark(shared, args)
    ray.shutdown()
    report["benchmark_wall_s"] = time.perf_counter() - started
    print_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.out}  (benchmark took {report['benchmark_wall_s']:.0f} s)")
    return 0


def scaling_runs(workload: Workload, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Small runs (train limited) along one axis at a time, the others at their defaults."""
    small = argparse.Namespace(**{**vars(args), "train_limit": args.scaling_train_limit})
    base_tasks = min(3, len(workload.tasks))
    plan: list[tuple[str, int, int, int]] = []
    plan += [("slots", base_tasks, s, args.evaluators) for s in args.scaling_slots]
    plan += [("evaluators", min(9, len(workload.tasks)), args.slots, e) for e in args.scaling_evaluators]
    plan += [("tasks", n, args.slots, args.evaluators) for n in args.scaling_tasks if n <= len(workload.tasks)]
    out = []
    for axis, n_tasks, slots, evaluators in plan:
        sub = workload.subset(n_tasks)
        endpoint = ProcessFake(endpoint_config(workload, latency=args.latency, slots=slots))
        try:
            r = _strip(distributed_run(sub, endpoint, root, small, evaluators=evaluators))
        finally:
            endpoint.close()
        r["axis"] = axis
        out.append(r)
        print(f"  scaling {axis}: tasks {n_tasks} slots {slots} evaluators {evaluators}: {r['wall_s']:.1f} s, "
              f"util {r['utilization']['whole_run']:.2f}", flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
