"""The undisturbed run every fault scenario is compared with (once per session: the fake is deterministic)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from gpo_ray.api import optimize
from gpo_ray.core.results import TaskResult

from tests.faults.harness import TOTAL_STEPS, memory_contents, run_config, two_fakes


@dataclass(frozen=True)
class Undisturbed:
    tasks: dict[str, TaskResult]
    optimizer_stats: dict[str, Any]
    task_stats: dict[str, Any]
    memory: dict[str, Any]


@pytest.fixture(scope="session")
def undisturbed(ray_cluster, tmp_path_factory) -> Undisturbed:
    run_dir = tmp_path_factory.mktemp("undisturbed") / "run"
    with two_fakes() as (opt, task):
        results = optimize(run_config(run_dir, optimizer_url=opt.base_url, task_url=task.base_url))
        opt_stats, task_stats = opt.stats(), task.stats()
    assert results.status == "completed"
    assert [len(r.steps) for r in results.tasks.values()] == [TOTAL_STEPS]
    assert opt_stats["duplicates"] == 0 and task_stats["duplicates"] == 0
    assert all(r.best_eval_score > r.initial_eval_score for r in results.tasks.values()), "the run climbs"
    return Undisturbed(results.tasks, opt_stats, task_stats, memory_contents(run_dir / "chroma"))
