"""`--preset paper` end to end on the shared local Ray cluster against the fake endpoint: the optimizer requests the
endpoint received are the official GPO text (core/paper_meta_prompt.py, itself checked against the official code's
output in tests/unit/test_core_paper_meta_prompt.py) for the run's own states, sent 8 times a step at temperature
1.0 with 512 max tokens; and the task-model requests it received are what `plan --preset paper` counts."""

from __future__ import annotations

from collections import Counter

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig
from gpo_ray.core.loop import format_examples_for
from gpo_ray.core.paper_meta_prompt import build_paper_meta_prompt
from gpo_ray.core.plan import plan_task
from gpo_ray.core.retrieval import retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, write_sum_task
from tests.integration.usage_checks import assert_sent_with_metadata

pytestmark = pytest.mark.usefixtures("ray_cluster")


def paper_config(tmp_path, base_url: str) -> RunConfig:
    if not (tmp_path / "data" / "sums_a").exists():
        write_sum_task(tmp_path / "data" / "sums_a", seed=1)
    return RunConfig.model_validate({
        "preset": "paper",
        "tasks": ["sums/a"],
        "task_sources": [{"name": "sums/a", "format": "jsonl", "path": str(tmp_path / "data" / "sums_a"),
                          "metric": "numeric"}],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10},
        "optimizer": {"batch_size": 4, "epochs": 1},  # 8 training examples: 2 steps
        "run_dir": str(tmp_path / "run"),
    })


def test_paper_preset_sends_the_official_text(tmp_path):
    config = paper_config(tmp_path, "http://placeholder/v1")
    # Enough distinct proposals that every step's 8 candidates are new, as the plan counts them ("carefully" makes
    # them better than the initial prompt, so the best prompt's test scoring is not a cache hit of the initial one's).
    phrases = [f"Work carefully, check {i}." for i in range(200)]
    fake_settings = fake_config(config).model_copy(update={"record_requests": True, "optimizer_phrases": phrases})
    with ThreadedFake(fake_settings) as fake:
        config = paper_config(tmp_path, fake.base_url)
        results = optimize(config)
        log = fake.requests_log()

    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    result = results.tasks["sums/a"]
    assert len(result.steps) == 2
    assert assert_sent_with_metadata(log) == {("task_model", "answer"), ("task_model", "second_turn"),
                                              ("optimizer", "candidates")}
    sent = [r for r in log if r["role"] == "optimizer"]
    assert {(r["temperature"], r["max_tokens"]) for r in sent} == {(1.0, 512)}

    trajectory = [TrajectoryEntry(result.initial_prompt, result.initial_eval_score, 0)]
    expected: list[str] = []
    for step in result.steps:
        # At most 2 trajectory prompts before a step: the relevance order (newest first) needs no embedding.
        retrieved = retrieve(trajectory, strategy="relevance", k=3, vectors=[[1.0]] * len(trajectory),
                             order="as_selected")
        expected += [build_paper_meta_prompt(
            current_prompt=trajectory[-1].prompt, retrieved=retrieved,
            format_examples=format_examples_for(task, config.optimizer), edit_budget=step.edit_budget,
            placement=config.optimizer.placement)] * 8
        trajectory.append(TrajectoryEntry(step.prompt, step.eval_score, step.step))
    assert Counter(r["text"] for r in sent) == Counter(expected)

    plan = plan_task(task, config.optimizer, optimizer_max_tokens=512, task_max_tokens=64)
    assert plan.optimizer_calls == len(sent) == 16
    for step in result.steps:  # every new candidate on the whole eval split; a repeated one keeps its score
        fresh = len(step.candidates) - step.counts.get("reused_score", 0)
        assert step.counts["scoring_calls"] == fresh * len(task.eval)
        assert all(c.examples == len(task.eval) for c in step.candidates)
    # Scoring as the plan counts it: the initial prompt on eval and on test, each step's candidates on eval, and the
    # traces (trace_scores): the current prompt on each step's training batch, the step's prompt on test; every
    # example asked twice (the second turn for the final answer). The plan counts 8 new candidates a step.
    assert all(s.train_score is not None and s.test_score is not None for s in result.steps)
    assert result.initial_test_score is not None
    traced = [s.counts["trace_scoring_calls"] for s in result.steps]
    assert traced == [4 + len(task.test)] * 2  # batches of 4 (file order), the test split
    first_turns = (len(task.eval) + len(task.test) + sum(s.counts["scoring_calls"] for s in result.steps)
                   + sum(traced))
    received = [r for r in log if r["role"] != "optimizer"]
    assert len(received) == 2 * first_turns == results.usage["task_model"]["requests"]
    assert [len(s.candidates) - s.counts.get("reused_score", 0) for s in result.steps] == [8, 8]
    assert len(received) == plan.task_model_calls
