"""The Python API and what the `optimize`/`resume` commands run: check the inputs, create or reopen the run
directory, then run the controller on a `RunSession` (launch/: endpoints, Ray, actors, teardown) and return what
happened. It prints nothing (the CLI prints)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import RunConfig
from gpo_ray.launch import ACTOR_OPTIONS, Results, RunActors, RunSession, check_cluster, setup_logs
from gpo_ray.observability.metrics import run_metrics_context
from gpo_ray.observability.tracking import check_tracking, open_tracker
from gpo_ray.runtime.run_dir import RunDirectory, default_run_dir
from gpo_ray.tasks.metric_functions import check_metric_hashes, with_metric_hashes
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Task

# Names callers import from here, wherever they now live (launch/).
__all__ = ["ACTOR_OPTIONS", "Results", "RunActors", "optimize", "resume", "setup_logs"]


def _execute(config: RunConfig, run_dir: RunDirectory, tasks: list[Task], *, output: str,
             embedder_factory: Any = None, on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    """Run `tasks` (resolved once, at the edge: their data is read once per run) on a RunSession."""
    from gpo_ray.controller.controller import Controller

    structlog.contextvars.bind_contextvars(run=run_dir.path.name)  # every driver event of this run carries it
    with RunSession(config, home=run_dir.path, cache_dir=run_dir.cache_dir, log_dir=run_dir.logs_dir,
                    tasks=len(tasks), output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started) as session:
        config = session.config
        metrics = session.metrics(run_metrics_context(config, run_dir.path))
        controller = Controller(config, tasks, run_dir, memory=session.memory, refiners=session.refiners,
                                evaluators=session.evaluators, progress=session.progress,
                                structured=session.structured,
                                tracker=open_tracker(config, run_dir.path, metrics=metrics), metrics=metrics)
        outcome = session.run(controller.run(), tasks=[t.name for t in tasks])
    results = Results.of(run_dir.path, outcome, controller.usage)
    structlog.get_logger().info("run_finished", status=results.status)
    return results


def optimize(config: RunConfig, *, output: str = "quiet", embedder_factory: Any = None,
             on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    """Run GPO on the config's tasks; the Python twin of `gpo-ray optimize`."""
    if config.run_dir is None:
        config = config.model_copy(update={"run_dir": default_run_dir()})
    # Validate the data, the metrics and the tracking wanted before anything is written or started.
    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    config = with_metric_hashes(config)  # a Python metric that cannot be imported stops here
    check_tracking(config)
    check_cluster(config.cluster.address)
    run_dir = RunDirectory(config.run_dir)
    run_dir.create(config)
    setup_logs(config, run_dir.logs_dir, output)
    return _execute(config, run_dir, tasks, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)


def resume(run_path: Path, *, address: str | None = None, output: str = "quiet", embedder_factory: Any = None,
           on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    """Continue a run from its last completed step, with the config it was started with."""
    run_dir = RunDirectory(run_path)
    config = run_dir.load_config()
    check_metric_hashes(config)  # a Python metric that cannot be imported, or was changed, stops here
    # Refuse damaged or foreign checkpoints (and missing data) before anything is started or written.
    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    for task in tasks:
        run_dir.completed_steps(task.name, fingerprint=config.fingerprint())
    check_tracking(config)
    if address is not None:
        config = config.model_copy(update={"cluster": config.cluster.model_copy(update={"address": address})})
    check_cluster(config.cluster.address)
    setup_logs(config, run_dir.logs_dir, output)
    structlog.get_logger().info("run_resumed", run_dir=str(run_path))
    return _execute(config, run_dir, tasks, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)
