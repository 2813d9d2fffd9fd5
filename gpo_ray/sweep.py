"""`gpo-ray sweep GRID`: every (variant, seed) of a grid as one job on one Ray cluster.

One set of actors serves every sub-run: one refiner pool and one evaluator pool, fair across (sub-run, task) and
routing identical work to the same actor; one response cache (SWEEP_DIR/cache), so a request two variants send is
answered once; one trajectory memory actor, each sub-run's tasks under its own prefix (a memory actor holds Chroma
and the MiniLM embedder, about 390 MB: one per sub-run would not fit a small machine, and the shared one embeds a
prompt that several variants reach once). One Controller per sub-run, all in one event loop, each writing a normal
run directory (SWEEP_DIR/runs/<variant>--seed<k>/) that `report`, `export` and `resume` read on its own. The
endpoints, Ray and the actors are a `RunSession`'s (launch/), as a run's are, the warm start included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import RunConfig, sampling_settings
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.core.plan import TaskPlan, has_second_turn, plan_task
from gpo_ray.grid import Grid, SubRun
from gpo_ray.launch import Results, RunActors, RunSession, check_cluster, setup_logs, warm_start_applies
from gpo_ray.observability.metrics import run_metrics_context
from gpo_ray.observability.tracking import check_tracking, open_tracker
from gpo_ray.runtime.run_dir import default_run_dir
from gpo_ray.runtime.sweep_dir import SweepDirectory
from gpo_ray.tasks.metric_functions import check_metric_hashes, with_metric_hashes
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Task
from gpo_ray.vocabulary import Role, RunStatus


@dataclass(frozen=True)
class SweepResults:
    sweep_dir: Path
    status: RunStatus
    runs: dict[str, Results]  # sub-run name ("<variant>--seed<k>") -> its results
    variants: dict[str, str]  # sub-run name -> variant

    @property
    def usage(self) -> dict[str, dict[str, Any]]:
        """What the whole sweep asked of each role: every request was sent for exactly one sub-run."""
        from gpo_ray.controller.controller import sum_usage

        roles = [role for role in Role if role is not Role.JUDGE or any(role in r.usage for r in self.runs.values())]
        return {role: sum_usage([r.usage.get(role, {}) for r in self.runs.values()]) for role in roles}


class _SubRunProgress:
    """A sub-run's progress lines, named `<sub-run>/<task>` on the sweep's one display."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self.inner = inner
        self.prefix = prefix

    def task_started(self, task: str, *, total_steps: int, done_steps: int) -> None:
        self.inner.task_started(f"{self.prefix}/{task}", total_steps=total_steps, done_steps=done_steps)

    def step_done(self, task: str, **kwargs: Any) -> None:
        self.inner.step_done(f"{self.prefix}/{task}", **kwargs)

    def close(self) -> None:
        pass  # the sweep closes the display


def sweep(grid: Grid, *, sweep_dir: Path | None = None, output: str = "quiet", embedder_factory: Any = None,
          on_actors_started: Callable[[RunActors], None] | None = None) -> SweepResults:
    """Run every (variant, seed) of `grid` on its tasks as one job; the Python twin of `gpo-ray sweep`."""
    path = Path(sweep_dir or grid.base.get("run_dir") or default_run_dir())
    runs = grid.sub_runs(path)
    first = runs[0].config
    # Validate the data, the metrics and the tracking wanted before anything is written or started.
    tasks = resolve_tasks(first.tasks, data_dir=first.data_dir, sources=first.task_sources)  # shared by every sub-run
    runs = [replace(r, config=with_metric_hashes(r.config)) for r in runs]  # a metric that cannot be imported stops
    check_tracking(first)
    check_cluster(first.cluster.address)
    directory = SweepDirectory(path)
    directory.create(grid, runs)
    setup_logs(first, directory.logs_dir, output)
    structlog.get_logger().info("sweep_created", sweep_dir=str(path), runs=[r.name for r in runs])
    return _execute(directory, runs, tasks, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)


def resume_sweep(path: Path, *, address: str | None = None, output: str = "quiet", embedder_factory: Any = None,
                 on_actors_started: Callable[[RunActors], None] | None = None) -> SweepResults:
    """Continue every sub-run of a sweep from its last completed step."""
    directory = SweepDirectory(path)
    runs = directory.load_sub_runs()
    # Refuse damaged or foreign checkpoints (and missing data) before anything is started or written. The tasks,
    # data_dir and task_sources are shared by every sub-run (grid.SHARED_KEYS): their data is read once.
    first = runs[0].config
    tasks = resolve_tasks(first.tasks, data_dir=first.data_dir, sources=first.task_sources)
    for run in runs:
        c = run.config
        check_metric_hashes(c)
        for task in tasks:
            directory.run_dir(run.name).completed_steps(task.name, fingerprint=c.fingerprint())
    check_tracking(runs[0].config)
    if address is not None:
        runs = [SubRun(name=r.name, variant=r.variant, seed=r.seed, config=r.config.model_copy(update={
            "cluster": r.config.cluster.model_copy(update={"address": address})})) for r in runs]
    check_cluster(runs[0].config.cluster.address)
    setup_logs(runs[0].config, directory.logs_dir, output)
    structlog.get_logger().info("sweep_resumed", sweep_dir=str(path))
    return _execute(directory, runs, tasks, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)


def _execute(directory: SweepDirectory, runs: list[SubRun], tasks: list[Task], *, output: str,
             embedder_factory: Any, on_actors_started: Callable[[RunActors], None] | None) -> SweepResults:
    from gpo_ray.controller.controller import Controller, SharedPools, evaluator_pool
    from gpo_ray.controller.pools import EvaluatorPoolView, RefinerPool, RefinerPoolView

    first = runs[0].config  # the settings every sub-run shares (grid.check_shared); `tasks` are theirs, read once
    structlog.contextvars.bind_contextvars(run=directory.path.name)
    # A warm start when every sub-run would have one alone (their shared settings mostly decide it already).
    with RunSession(first, kind="sweep", home=directory.path, cache_dir=directory.cache_dir,
                    log_dir=directory.logs_dir, tasks=len(tasks) * len(runs), output=output,
                    embedder_factory=embedder_factory, on_actors_started=on_actors_started,
                    warm_start=all(warm_start_applies(r.config) for r in runs)) as session:
        first = session.config

        async def run_all() -> tuple[list[Controller], list[Any]]:
            metrics = session.metrics(run_metrics_context(first, directory.path))
            refiner_pool = RefinerPool(session.refiners, metrics=metrics, route_by_content=True)
            scorer_pool = evaluator_pool(session.evaluators, first, metrics=metrics, route_by_content=True)
            controllers = []
            for run in runs:
                run_dir = directory.run_dir(run.name)
                shared = SharedPools(
                    account=run.name, memory_namespace=f"{run.name}/",
                    refiners=RefinerPoolView(refiner_pool, account=run.name),
                    evaluators=EvaluatorPoolView(scorer_pool, params=task_model_params(run.config),
                                                 account=run.name))
                run_metrics = session.metrics(run_metrics_context(run.config, run_dir.path))
                tracker = open_tracker(run.config, run_dir.path, metrics=run_metrics)
                controllers.append(Controller(run.config, tasks, run_dir, memory=session.memory,
                                              refiners=session.refiners, evaluators=session.evaluators,
                                              progress=_SubRunProgress(session.progress, run.name),
                                              structured=session.structured, tracker=tracker, shared=shared,
                                              metrics=run_metrics))
            try:
                # Every sub-run ends on its own: one that fails stops, the others finish their work.
                outcomes = await asyncio.gather(*(c.run() for c in controllers), return_exceptions=True)
            finally:
                await scorer_pool.close()
            failures = [o for o in outcomes if isinstance(o, BaseException)]
            if failures:
                raise failures[0]
            return controllers, outcomes

        controllers, outcomes = session.run(run_all(), runs=[r.name for r in runs], tasks=[t.name for t in tasks])
    results = {run.name: Results.of(controller.run_dir.path, outcome, controller.usage)
               for run, controller, outcome in zip(runs, controllers, outcomes, strict=True)}
    status = RunStatus.of_tasks(r.status for r in results.values())
    structlog.get_logger().info("sweep_finished", status=status)
    return SweepResults(sweep_dir=directory.path, status=status, runs=results,
                        variants={r.name: r.variant for r in runs})


# plan ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantPlan:
    variant: str
    seeds: int
    tasks: list[TaskPlan]  # one seed's plan per task (every seed costs the same)
    sampling: dict[str, dict[str, Any]]  # per role: model, temperature, max_tokens (config.sampling_settings)

    def total(self, key: str) -> int:
        return self.seeds * sum(getattr(p, key) for p in self.tasks)


@dataclass(frozen=True)
class GridPlan:
    variants: list[VariantPlan]
    shared_task_model_calls: int  # asked by more than one sub-run, answered once (the initial prompt's scores)

    def total(self, key: str) -> int:
        return sum(v.total(key) for v in self.variants)

    def to_dict(self) -> dict[str, Any]:
        keys = ("optimizer_calls", "task_model_calls", "second_turn_calls", "optimizer_tokens", "task_model_tokens",
                "judge_calls", "judge_tokens")
        return {
            "variants": {v.variant: {"seeds": v.seeds, "sampling": v.sampling, **{k: v.total(k) for k in keys},
                                     "tasks": {p.task: p.to_dict() for p in v.tasks}} for v in self.variants},
            "total": {k: self.total(k) for k in keys},
            "shared_task_model_calls": self.shared_task_model_calls,
        }


def plan_grid(grid: Grid) -> GridPlan:
    """Calls and tokens of every variant over its seeds (core/plan.py per task), and how many of the task-model
    calls several sub-runs ask identically: the initial prompt's eval and test scores."""
    runs = grid.sub_runs(Path("runs") / "plan")
    first = runs[0].config
    tasks = resolve_tasks(first.tasks, data_dir=first.data_dir, sources=first.task_sources)
    plans: dict[str, VariantPlan] = {}
    seen: set[tuple] = set()
    shared = 0
    for run in runs:
        c = run.config
        if run.variant not in plans:
            plans[run.variant] = VariantPlan(run.variant, len(grid.seeds), [_plan(t, c) for t in tasks],
                                             sampling_settings(c))
        for task in tasks:
            key, calls = _initial_scoring(task, c)
            shared += calls if key in seen else 0
            seen.add(key)
    return GridPlan(variants=list(plans.values()), shared_task_model_calls=shared)


def _plan(task: Task, config: RunConfig) -> TaskPlan:
    return plan_task(task, config.optimizer, optimizer_max_tokens=config.optimizer_model.max_tokens or 256,
                     task_max_tokens=config.task_model.max_tokens or 256,
                     judge_max_tokens=config.judge_model.max_tokens or 256)


def _initial_scoring(task: Task, config: RunConfig) -> tuple[tuple, int]:
    """What makes the initial prompt's scoring requests, and how many task-model calls they are."""
    s = config.optimizer
    n_eval = min(len(task.eval), s.eval_limit or len(task.eval))
    n_test = min(len(task.test), s.test_limit or len(task.test)) if s.evaluate_test else 0
    turns = 2 if has_second_turn(task, s) else 1
    return (task.name, task_model_params(config), s.initial_prompt, n_eval, n_test), (n_eval + n_test) * turns
