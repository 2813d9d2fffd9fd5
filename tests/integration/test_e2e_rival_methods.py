"""Every optimizer (`optimizer.method` gpo | ape | apo | opro | pe2) end to end on the shared local Ray cluster against
the fake endpoint, two steps each: the calls arriving at the endpoint, by role, are the ones `plan` counts (every
request through the refiner and evaluator pools), the results record them per step, and each rival method's
requests are its own (APE's demos then resampling, APO's gradients, OPRO's scored instructions)."""

from __future__ import annotations

from collections import Counter

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig
from gpo_ray.core.plan import plan_task
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, write_sum_task
from tests.integration.usage_checks import assert_sent_with_metadata

pytestmark = pytest.mark.usefixtures("ray_cluster")

# Small settings of each method (its paper's are for hundreds of examples): two steps on 8 training examples.
METHODS = {
    "gpo": {"candidates": 3, "retrieval": "recency"},
    "ape": {"candidates": 3, "ape": {"num_demos": 2}},
    "apo": {"apo": {"beam_size": 2, "minibatch_size": 2, "n_gradients": 2, "mc_samples_per_step": 1,
                    "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 2, "samples_per_eval": 1}},
    "opro": {"candidates": 3, "opro": {"exemplars": 2, "score_threshold": 0.0}},
    "pe2": {"candidates": 3, "retrieval": "recency"},
}
PHRASES = [f"Work carefully, part {i}." for i in range(300)]  # every candidate new, and better than the initial


def method_config(tmp_path, base_url: str, method: str) -> RunConfig:
    if not (tmp_path / "data" / "sums_a").exists():
        write_sum_task(tmp_path / "data" / "sums_a", seed=1)
    return RunConfig.model_validate({
        "tasks": ["sums/a"],
        "task_sources": [{"name": "sums/a", "format": "jsonl", "path": str(tmp_path / "data" / "sums_a"),
                          "metric": "numeric"}],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10, "temperature": 1.0,
                            "structured_output": False},
        "optimizer": {"method": method, "batch_size": 4, "epochs": 1, "initial_prompt": "Answer the question.",
                      **METHODS[method]},
        "cluster": {"num_refiners": 2, "num_evaluators": 2, "evaluator_max_in_flight": 4},
        "run_dir": str(tmp_path / "run"),
    })


@pytest.mark.parametrize("method", list(METHODS))
def test_method_makes_the_planned_calls_through_the_pools(tmp_path, method):
    config = method_config(tmp_path, "http://placeholder/v1", method)
    fake_settings = fake_config(config).model_copy(update={"record_requests": True, "optimizer_phrases": PHRASES})
    with ThreadedFake(fake_settings) as fake:
        config = method_config(tmp_path, fake.base_url, method)
        results = optimize(config)
        log = fake.requests_log()

    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    plan = plan_task(task, config.optimizer, optimizer_max_tokens=config.optimizer_model.max_tokens or 512,
                     task_max_tokens=config.task_model.max_tokens)
    result = results.tasks["sums/a"]
    assert len(result.steps) == plan.steps == 2
    assert result.best_step > 0, "the method moved to a better prompt"
    assert_sent_with_metadata(log)
    by_role = Counter(r["role"] for r in log)
    optimizer_sent = by_role["optimizer"] + by_role["feedback"] + by_role["summarize"]
    assert optimizer_sent == plan.optimizer_calls == results.usage["optimizer"]["requests"]
    assert by_role["task"] == plan.task_model_calls == results.usage["task_model"]["requests"]
    if method in ("gpo", "pe2"):
        return
    # The steps count what they sent.
    assert sum(s.counts["optimizer_calls"] for s in result.steps) == plan.optimizer_calls
    assert all(s.counts.get("reused_score", 0) == 0 for s in result.steps)
    texts = [r["text"] for r in log if r["role"] in ("optimizer", "feedback")]
    if method == "ape":
        assert plan.method_calls == {"propose": 3, "resample": 3}
        assert [t.startswith("I gave a friend an instruction.") for t in texts] == [True] * 3 + [False] * 3
        assert all(f"Input: {result.steps[0].prompt}\n\nOutput:" in t for t in texts[3:])
    elif method == "apo":
        assert by_role["feedback"] == plan.method_calls["gradients"]
        assert all(t.startswith("\nI'm trying to write a zero-shot classifier") for t in texts if "reasons" in t)
        assert result.steps[1].beam is not None and result.steps[1].beam[0] == result.steps[1].prompt
    else:
        second = texts[3]
        assert second.startswith("Your task is to generate the instruction <INS>.")
        assert f"\ntext:\n{result.steps[0].prompt}\nscore:\n" in second
