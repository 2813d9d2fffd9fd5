"""The two kinds of run against a hosted endpoint (`gpo_ray.testing.ProcessFake`): gpo-ray's actor system, and the
sequential reference optimizer with a given number of calls in flight (1 = the paper's loop). Each returns its
measurements and, under "results", every task's result (`strip` drops them for the report)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness.fairness import ProgressSampler
from benchmarks.harness.measure import ProcessSampler, endpoint_capacity, utilization
from benchmarks.harness.profile import Profiler
from benchmarks.harness.workload import Workload, run_config
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.reference import optimize_sequential
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.stack import build_client
from gpo_ray.testing import ProcessFake


def strip(run: dict[str, Any]) -> dict[str, Any]:
    """A run without its per-task results, as the report keeps it."""
    return {k: v for k, v in run.items() if k != "results"}


def distributed_run(workload: Workload, endpoint: ProcessFake, root: Path, args: argparse.Namespace, *,
                    evaluators: int, also_started: Callable[[Any], None] | None = None) -> dict[str, Any]:
    """`optimize()` on the running Ray, sampling the driver's and every actor's CPU and memory (`also_started`:
    called with the run's actors too)."""
    import ray

    from gpo_ray.api import optimize

    config = run_config(workload, endpoint.base_url, root, args, evaluators=evaluators)
    endpoint.reset()
    profiler = (Profiler(args.py_spy / f"{len(workload.tasks)}-tasks-{time.monotonic_ns()}")
                if getattr(args, "py_spy", None) else None)
    with ProcessSampler() as sampler:
        endpoint_pid = getattr(getattr(endpoint, "process", None), "pid", None)
        if endpoint_pid is not None:
            sampler.add(endpoint_pid, "endpoint")  # not orchestration: reported on its own

        def started(actors: Any) -> None:
            if profiler is not None:
                profiler.add(os.getpid(), "driver")
            for kind, handles in (("memory", memory_handles(actors)), ("refiner", actors.refiners),
                                  ("evaluator", actors.evaluators)):
                for pid in ray.get([h.pid.remote() for h in handles]):
                    sampler.add(pid, kind)
                    if profiler is not None:
                        profiler.add(pid, kind)
            if also_started is not None:
                also_started(actors)

        t0, t0_mono = time.perf_counter(), time.monotonic()
        with ProgressSampler(config.run_dir, workload.task_names,
                             lambda: {p: k for p, k in dict(sampler.pids).items() if k != "endpoint"},
                             interval=getattr(args, "sample_interval", 2.0)) as progress:
            results = optimize(config, on_actors_started=started)
        wall = time.perf_counter() - t0
    profile = profiler.stop() if profiler is not None else None
    total_steps = sum(len(r.steps) for r in results.tasks.values())
    driver_cpu = sampler.cpu_seconds("driver") - progress.cpu_s  # the sampler thread is the benchmark's, not ours
    stats = endpoint.stats()
    calls = stats["completed"]
    actor_cpu = sum(sampler.cpu_seconds(k) for k in ("memory", "refiner", "evaluator"))
    processes = {pid: kind for pid, kind in sampler.pids.items() if kind != "endpoint"}
    return {
        "tasks": len(workload.tasks), "slots": endpoint.config.concurrency, "evaluators": evaluators, "wall_s": wall,
        "utilization": utilization(endpoint.timeline(), capacity=endpoint_capacity(endpoint.config), wall=wall,
                                   started=t0_mono),
        "memory_shards": sum(1 for k in processes.values() if k == "memory"),
        "steps": total_steps,
        "cpu_s": {"driver": driver_cpu, "actors": actor_cpu,
                  **{k: sampler.cpu_seconds(k) for k in ("memory", "refiner", "evaluator")},
                  "endpoint (not counted)": sampler.cpu_seconds("endpoint")},
        "cpu_ms_per_call": 1000 * (driver_cpu + actor_cpu) / max(calls, 1),
        "cpu_ms_per_step": 1000 * (driver_cpu + actor_cpu) / max(total_steps, 1),
        "peak_rss_mb": {k: sampler.peak_rss(k) / 2**20 for k in ("driver", "memory", "refiner", "evaluator")},
        "peak_rss_total_mb": sum(sampler.rss.get(p, 0) for p in processes) / 2**20,
        "processes": sorted(processes.values()),
        "progress": progress.report(total_steps),
        "results_json": results_json_cost(config.run_dir),
        "peak_in_service": stats["peak_in_service"],
        "results": {n: r.to_dict() for n, r in results.tasks.items()},
        **({"profile": profile} if profile is not None else {}),
    }


def results_json_cost(run_dir: Path) -> dict[str, Any]:
    """The finished run's results.json: its size, and what one rewrite costs (the driver rewrites it at most once a
    second while a run goes), with the state writer's own serialiser (`ResultsDocument`) on the run's document:
    the first write, and a rewrite after one task's step (the same work since results.json is serialised from its
    pydantic model; before, the controller re-serialised only the changed entries), written atomically (fsync
    included)."""
    from gpo_ray.atomic import write_text_atomic
    from gpo_ray.controller.state_writer import ResultsDocument

    path = run_dir / "results.json"
    doc = json.loads(path.read_text())

    def rewrite() -> tuple[float, float]:
        cpu, wall = time.process_time(), time.perf_counter()
        write_text_atomic(run_dir / "results-copy.json", ResultsDocument.model_validate(doc).text())
        return 1000 * (time.process_time() - cpu), 1000 * (time.perf_counter() - wall)

    full_cpu, full_wall = rewrite()
    name = next(iter(doc["tasks"]))
    doc["tasks"][name] = dict(doc["tasks"][name])  # one task moved on: its entry is a new one
    step_cpu, step_wall = rewrite()
    return {"bytes": path.stat().st_size, "full_rewrite_cpu_ms": full_cpu, "full_rewrite_wall_ms": full_wall,
            "rewrite_cpu_ms": step_cpu, "rewrite_wall_ms": step_wall}


def memory_handles(actors: Any) -> list[Any]:
    """Every trajectory-memory actor of a run (one per shard)."""
    return list(getattr(actors, "memory_shards", None) or [actors.memory])


def sequential_run(workload: Workload, endpoint: ProcessFake, args: argparse.Namespace, *, in_flight: int,
                   root: Path) -> dict[str, Any]:
    """`core/reference.py` in this process: tasks in series, at most `in_flight` calls at a time."""
    from gpo_ray.llm.embedding import default_embedder

    config = run_config(workload, endpoint.base_url, root, args, evaluators=1)
    role = config.task_model.model_copy(update={"max_in_flight": in_flight})
    counters = UsageCounters()
    opt = build_client(role.model_copy(update={"temperature": 1.0}), role_name="optimizer",
                       base_url=endpoint.base_url, model="fake-llm", cache=None, counters=counters)
    task_llm = build_client(role, role_name="task_model", base_url=endpoint.base_url, model="fake-llm",
                            cache=None, counters=counters)
    params = TaskModelParams(placement=config.optimizer.placement, temperature=0.0, max_tokens=64,
                             seed=config.optimizer.seed)
    embedder = default_embedder()  # one per process: loaded once, not once per sequential run
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
