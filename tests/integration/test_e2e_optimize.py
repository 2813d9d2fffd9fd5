"""End to end on the shared local Ray cluster against the fake endpoint: several tasks at once, the
distributed result equal to the sequential reference optimizer's, results.json of the documented shape."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import LLMRoleConfig, RunConfig, TaskSource
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.reference import optimize_sequential
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.embedding import MiniLMEmbedder
from gpo_ray.llm.stack import build_client
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples


pytestmark = pytest.mark.usefixtures("ray_cluster")

SKILLS = {"step by step": 0.35, "carefully": 0.25}


def write_sum_task(folder, *, seed: int, n: int = 8) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for split in ("train", "eval", "test", "format"):
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(n if split != "format" else 2):
                a, b = rng.randint(2, 60), rng.randint(2, 60)
                f.write(json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b)}) + "\n")


def make_config(tmp_path, base_url: str, **optimizer) -> RunConfig:
    write_sum_task(tmp_path / "data" / "sums_a", seed=1)
    write_sum_task(tmp_path / "data" / "sums_b", seed=2)
    role = LLMRoleConfig(base_url=base_url, model="fake-llm", max_tokens=64, timeout_s=10)
    opt = dict(epochs=2, batch_size=4, candidates=3, initial_prompt="Answer the question.", seed=7,
               schedule={"initial": 12, "final": 4})
    opt.update(optimizer)
    return RunConfig(
        tasks=["example/arithmetic", "sums/*"],
        task_sources=[TaskSource(name="sums/a", format="jsonl", path=tmp_path / "data" / "sums_a", metric="numeric"),
                      TaskSource(name="sums/b", format="jsonl", path=tmp_path / "data" / "sums_b", metric="numeric")],
        task_model=role,
        optimizer_model=role.model_copy(update={"temperature": 1.0}),
        optimizer=opt,
        # The actor counts left to the run, as a user leaves them: on the session cluster (one node, the driver's) a
        # run of at most 3 tasks gets one refiner and scores in its driver; tests about actors set their counts.
        run_dir=tmp_path / "run",
    )


def fake_config(config: RunConfig) -> FakeLLMConfig:
    tasks = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    examples = [ex for t in tasks for ex in (*t.train, *t.eval, *t.test)]
    return FakeLLMConfig(base_accuracy=0.3, skill_phrases=SKILLS, answer_key=answer_key_from_examples(examples),
                         optimizer_phrases=["Think step by step.", "Work carefully.", "Be concise.", "Show your work."])


def sequential_results(config: RunConfig, base_url: str):
    tasks = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    counters = UsageCounters()
    opt = build_client(config.optimizer_model, role_name="optimizer", base_url=base_url, model="fake-llm",
                       cache=None, counters=counters)
    task_llm = build_client(config.task_model, role_name="task_model", base_url=base_url, model="fake-llm",
                            cache=None, counters=counters)
    params = TaskModelParams(placement=config.optimizer.placement, temperature=config.task_model.temperature,
                             max_tokens=config.task_model.max_tokens, seed=config.optimizer.seed)
    return asyncio.run(optimize_sequential(
        tasks, settings=config.optimizer, optimizer_llm=opt, task_llm=task_llm, embed=MiniLMEmbedder().embed,
        task_params=params, structured=False, optimizer_temperature=config.optimizer_model.temperature,
        optimizer_max_tokens=config.optimizer_model.max_tokens))


def test_three_tasks_at_once_climb_and_match_the_sequential_reference(tmp_path):
    config = make_config(tmp_path, "http://placeholder/v1")
    with ThreadedFake(fake_config(config)) as fake:
        config = make_config(tmp_path / "x", fake.base_url)
        results = optimize(config)
        distributed_requests = fake.stats()["requests"]
        assert fake.stats()["duplicates"] == 0, "nothing was generated twice"
        reference = sequential_results(config, fake.base_url)

    assert set(results.tasks) == {"example/arithmetic", "sums/a", "sums/b"}
    for name, r in results.tasks.items():
        assert r.best_eval_score > r.initial_eval_score, name
        assert r.steps and all(s.candidates for s in r.steps)
    assert results.tasks == reference, "distributed and sequential GPO must agree for the same seed and endpoint"

    doc = json.loads((config.run_dir / "results.json").read_text())
    assert doc["status"] == "completed"
    for name, entry in doc["tasks"].items():
        for key in ("initial_prompt", "initial_eval_score", "initial_test_score", "best_prompt", "best_eval_score",
                    "best_test_score", "steps"):
            assert key in entry, (name, key)
        for key in ("initial_eval_score", "initial_test_score", "best_eval_score", "best_test_score"):
            assert 0.0 <= entry[key] <= 1.0
        for step in entry["steps"]:
            assert {"step", "edit_budget", "prompt", "eval_score", "candidates"} <= set(step)
    usage = doc["usage"]
    assert usage["optimizer"]["requests"] + usage["task_model"]["requests"] == distributed_requests
    assert usage["optimizer"]["requests"] > 0 and usage["task_model"]["requests"] > 0
