"""Adaptive concurrency (task_model.adaptive_concurrency) against an endpoint with few service slots that answers
429 to a fifth of its requests: the run completes with the undisturbed run's prompts and scores, each evaluator's
limit backed off below its cap (usage.json, `concurrency`), and the endpoint never had more requests open at once
than the cap allows."""

from __future__ import annotations

import json

import pytest

from gpo_ray.api import optimize

from tests.faults.harness import NUM_EVALUATORS, assert_same_as_undisturbed, fake_llm_config, run_config, two_fakes

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

CAP = 3  # the task model's max_in_flight: per evaluator, per endpoint
EVALUATOR_ITEMS = 16  # examples one evaluator scores at once: more than the cap, so the cap is what binds


def test_adaptive_limit_backs_off_on_429s_and_never_exceeds_the_cap(tmp_path, undisturbed):
    task_cfg = fake_llm_config(concurrency=2, latency_s=0.02, error_rate_429=0.2, retry_after_s=0.05)
    with two_fakes(None, task_cfg) as (opt, task):
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        adaptive = {"enabled": True, "min": 1, "initial": CAP}
        config = config.model_copy(update={
            "task_model": config.task_model.model_copy(update={
                "max_in_flight": CAP,
                "adaptive_concurrency": type(config.task_model.adaptive_concurrency)(**adaptive)}),
            # Only the evaluators call the task model (no scoring in the driver while they start), each with
            # more examples at once than its cap.
            "cluster": config.cluster.model_copy(update={"warm_start": False,
                                                         "evaluator_max_in_flight": EVALUATOR_ITEMS}),
        })
        results = optimize(config)
        task_stats = task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert task_stats["faults"].get("429", 0) > 0
    assert task_stats["peak_open"] <= CAP * NUM_EVALUATORS, "never more in flight than the cap"

    usage = json.loads((config.run_dir / "usage.json").read_text())["task_model"]
    assert usage["errors"]["rate_limited"] == task_stats["faults"]["429"]
    (level,) = usage["concurrency"].values()  # summed over the evaluators
    assert level["cap"] == CAP * NUM_EVALUATORS
    assert level["max"] <= level["cap"]
    assert level["min"] < level["cap"], "the 429s took the limit below the cap"
    assert 1 * NUM_EVALUATORS <= level["limit"] <= level["cap"]
    optimizer_usage = json.loads((config.run_dir / "usage.json").read_text())["optimizer"]
    assert "concurrency" not in optimizer_usage, "off for the optimizer: its usage keeps its shape"
