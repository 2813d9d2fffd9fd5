"""The 2x2 of `optimizer.update` (generate | edit) x `optimizer.budget_in_prompt` (true | false), with both meta-prompt
styles, end to end on the shared local Ray cluster against the fake endpoint for two steps: the optimizer requests
the endpoint received are the rendering (core/meta_prompt.py or core/paper_meta_prompt.py, the latter checked against
the official code's output in tests/unit/test_core_paper_meta_prompt_update.py) for the run's own states, and the
calls it received are what `plan` counts."""

from __future__ import annotations

from collections import Counter

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig
from gpo_ray.core.loop import format_examples_for, template_for
from gpo_ray.core.meta_prompt import build_meta_prompt
from gpo_ray.core.paper_meta_prompt import build_paper_meta_prompt
from gpo_ray.core.plan import plan_task
from gpo_ray.core.retrieval import retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, write_sum_task

pytestmark = pytest.mark.usefixtures("ray_cluster")


def variant_config(tmp_path, base_url: str, style: str, update: str, budget: bool) -> RunConfig:
    if not (tmp_path / "data" / "sums_a").exists():
        write_sum_task(tmp_path / "data" / "sums_a", seed=1)
    optimizer = {"batch_size": 4, "epochs": 1, "update": update, "budget_in_prompt": budget}  # 8 train: 2 steps
    if style == "own":
        optimizer |= {"retrieval": "recency", "candidate_scoring": "eval", "repeated_candidates": "keep_score"}
    return RunConfig.model_validate({
        **({"preset": "paper"} if style == "paper" else {}),
        "tasks": ["sums/a"],
        "task_sources": [{"name": "sums/a", "format": "jsonl", "path": str(tmp_path / "data" / "sums_a"),
                          "metric": "numeric"}],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10, "structured_output": False},
        "optimizer": optimizer,
        "run_dir": str(tmp_path / "run"),
    })


@pytest.mark.parametrize("style", ["paper", "own"])
@pytest.mark.parametrize(("update", "budget"), [("generate", True), ("generate", False), ("edit", True),
                                                ("edit", False)])
def test_variant_sends_its_rendering_and_the_planned_calls(tmp_path, style, update, budget):
    config = variant_config(tmp_path, "http://placeholder/v1", style, update, budget)
    phrases = [f"Work carefully, check {i}." for i in range(200)]  # every step's 8 candidates are new
    fake_settings = fake_config(config).model_copy(update={"record_requests": True, "optimizer_phrases": phrases})
    with ThreadedFake(fake_settings) as fake:
        config = variant_config(tmp_path, fake.base_url, style, update, budget)
        results = optimize(config)
        log = fake.requests_log()

    s = config.optimizer
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    result = results.tasks["sums/a"]
    assert len(result.steps) == 2
    sent = [r for r in log if r["role"] == "optimizer"]

    trajectory = [TrajectoryEntry(result.initial_prompt, result.initial_eval_score, 0)]
    expected: list[str] = []
    for step in result.steps:
        common = {"current_prompt": trajectory[-1].prompt, "format_examples": format_examples_for(task, s),
                  "edit_budget": step.edit_budget, "placement": s.placement, "update": update,
                  "budget_in_prompt": budget}
        if style == "paper":
            # At most 2 trajectory prompts before a step: the relevance order (newest first) needs no embedding.
            retrieved = retrieve(trajectory, strategy="relevance", k=3, vectors=[[1.0]] * len(trajectory),
                                 order="as_selected")
            text = build_paper_meta_prompt(retrieved=retrieved, **common)
        else:
            retrieved = retrieve(trajectory, strategy="recency", k=s.retrieval_k, order=s.retrieval_order)
            text = build_meta_prompt(retrieved=retrieved, structured=False, template=template_for(s), **common)
        expected += [text] * s.candidates
        trajectory.append(TrajectoryEntry(step.prompt, step.eval_score, step.step))
    assert Counter(r["text"] for r in sent) == Counter(expected)
    assert all(("You are allowed to change" in t or "You may change" in t) == budget for t in expected)
    assert all(("modify" in t or "edit" in t.split("\n")[0]) == (update == "edit") for t in expected)

    plan = plan_task(task, s, optimizer_max_tokens=config.optimizer_model.max_tokens or 512,
                     task_max_tokens=config.task_model.max_tokens)
    assert plan.optimizer_calls == len(sent) == 16
    assert [len(st.candidates) - st.counts.get("reused_score", 0) for st in result.steps] == [8, 8]
    received = [r for r in log if r["role"] != "optimizer"]
    assert len(received) == results.usage["task_model"]["requests"] == plan.task_model_calls
