"""A run reads each task's data once: `optimize`, `resume`, `sweep` and `resume_sweep` resolve the tasks at the
edge (where bad data stops the run before anything starts) and hand those tasks down, never reading the files
again. Counted at the loaders the task registry calls, for a folder task and two table tasks."""

from __future__ import annotations

from collections import Counter

import pytest

import gpo_ray.tasks.registry as registry
from gpo_ray.api import optimize, resume
from gpo_ray.grid import grid_from_dict
from gpo_ray.sweep import resume_sweep, sweep
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, make_config

pytestmark = pytest.mark.usefixtures("ray_cluster")

TASKS = ["example/arithmetic", "sums/a", "sums/b"]


@pytest.fixture
def reads(monkeypatch) -> Counter:
    """Task name -> how often its data was read through the registry from here on."""
    counts: Counter = Counter()
    folder, table = registry.load_gpo_folder, registry.load_table_source

    def counted_folder(path, *, name, **kwargs):
        counts[name] += 1
        return folder(path, name=name, **kwargs)

    def counted_table(source):
        counts[source.name] += 1
        return table(source)

    monkeypatch.setattr(registry, "load_gpo_folder", counted_folder)
    monkeypatch.setattr(registry, "load_table_source", counted_table)
    return counts


def best_prompts(results) -> dict[str, tuple[str, float | None]]:
    return {name: (t.best_prompt, t.best_eval_score) for name, t in results.tasks.items()}


def test_optimize_and_resume_each_read_every_task_once(tmp_path, reads):
    endpoint = fake_config(make_config(tmp_path / "fake", "http://placeholder/v1"))
    reads.clear()  # the endpoint's answer key was read above, by the test
    with ThreadedFake(endpoint) as fake:
        run = optimize(make_config(tmp_path, fake.base_url, epochs=1))
        assert reads == Counter(TASKS)
        reads.clear()
        resumed = resume(run.run_dir)  # a finished run resumes to its results, without new work
        assert reads == Counter(TASKS)
    assert resumed.status == run.status
    assert best_prompts(resumed) == best_prompts(run)


def test_sweep_and_resume_sweep_each_read_every_task_once(tmp_path, reads):
    endpoint = fake_config(make_config(tmp_path / "fake", "http://placeholder/v1"))
    reads.clear()
    with ThreadedFake(endpoint) as fake:
        base = make_config(tmp_path, fake.base_url, epochs=1).public_dict()
        base.pop("run_dir")
        grid = grid_from_dict({"base": base, "axes": {"optimizer.update": ["generate", "edit"]}, "seeds": [0]},
                              folder=tmp_path)
        swept = sweep(grid, sweep_dir=tmp_path / "sweep")
        assert reads == Counter(TASKS)  # two sub-runs share the tasks: read once, not once per sub-run
        reads.clear()
        resumed = resume_sweep(tmp_path / "sweep")
        assert reads == Counter(TASKS)
    assert {n: best_prompts(r) for n, r in resumed.runs.items()} == {n: best_prompts(r) for n, r in swept.runs.items()}
