"""Every optimizer (`optimizer.method` gpo | ape | apo | opro | pe2) end to end on the shared local Ray cluster against
the fake endpoint, two steps each, as one sweep with the response cache off (so every call asked is a request the
endpoint gets): each method's calls, by role, are the ones `plan` counts, every request reached the endpoint through
the refiner and evaluator pools with its metadata, and the steps count what they sent. (What each method's requests
say, and their order, is checked in-process: tests/unit/test_rival_methods.py.)"""

from __future__ import annotations

from collections import Counter

import pytest

from gpo_ray.grid import grid_from_dict
from gpo_ray.sweep import plan_grid, sweep
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, write_sum_task
from tests.integration.usage_checks import assert_sent_with_metadata

pytestmark = pytest.mark.usefixtures("ray_cluster")

# Small settings of each method (its paper's are for hundreds of examples): two steps on 8 training examples.
METHODS = {
    "gpo": {"optimizer.candidates": 3, "optimizer.retrieval": "recency"},
    "ape": {"optimizer.method": "ape", "optimizer.candidates": 3, "optimizer.ape": {"num_demos": 2}},
    "apo": {"optimizer.method": "apo",
            "optimizer.apo": {"beam_size": 2, "minibatch_size": 2, "n_gradients": 2, "mc_samples_per_step": 1,
                              "max_expansion_factor": 3, "eval_rounds": 2, "eval_prompts_per_round": 2,
                              "samples_per_eval": 1}},
    "opro": {"optimizer.method": "opro", "optimizer.candidates": 3, "optimizer.opro": {"exemplars": 2}},
    "pe2": {"optimizer.method": "pe2", "optimizer.candidates": 3, "optimizer.retrieval": "recency"},
}
PHRASES = [f"Work carefully, part {i}." for i in range(300)]  # every candidate new, and better than the initial


def base_config(tmp_path, base_url: str) -> dict:
    if not (tmp_path / "data" / "sums_a").exists():
        write_sum_task(tmp_path / "data" / "sums_a", seed=1)
    return {
        "tasks": ["sums/a"],
        "task_sources": [{"name": "sums/a", "format": "jsonl", "path": str(tmp_path / "data" / "sums_a"),
                          "metric": "numeric"}],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10, "temperature": 1.0,
                            "structured_output": False},
        "optimizer": {"batch_size": 4, "epochs": 1, "initial_prompt": "Answer the question."},
        "cache": False,
    }


def test_every_method_makes_the_planned_calls_through_the_pools(tmp_path):
    placeholder = grid_from_dict({"base": base_config(tmp_path, "http://placeholder/v1"), "variants": METHODS,
                                  "seeds": [0]}, folder=tmp_path)
    config = placeholder.sub_runs(tmp_path / "x")[0].config
    fake_settings = fake_config(config).model_copy(update={"record_requests": True, "optimizer_phrases": PHRASES})
    with ThreadedFake(fake_settings) as fake:
        grid = grid_from_dict({"base": base_config(tmp_path, fake.base_url), "variants": METHODS, "seeds": [0]},
                              folder=tmp_path)
        results = sweep(grid, sweep_dir=tmp_path / "sweep")
        log = fake.requests_log()
    assert results.status == "completed" and len(results.runs) == 5
    plan = {v.variant: v for v in plan_grid(grid).variants}
    assert_sent_with_metadata(log)
    by_role = Counter(r["role"] for r in log)
    assert by_role["optimizer"] + by_role["feedback"] + by_role["summarize"] == sum(
        p.total("optimizer_calls") for p in plan.values())
    assert by_role["task"] == sum(p.total("task_model_calls") for p in plan.values())
    for name, run in results.runs.items():
        method = results.variants[name]
        planned = plan[method]
        (result,) = run.tasks.values()
        assert len(result.steps) == planned.tasks[0].steps == 2, method
        assert result.best_step > 0, f"{method} moved to a better prompt"
        # What the sub-run sent is what plan counted for it (no cache: every call is a request).
        assert run.usage["optimizer"]["requests"] == planned.total("optimizer_calls"), method
        assert run.usage["task_model"]["requests"] == planned.total("task_model_calls"), method
        assert planned.tasks[0].method == ("gpo" if method in ("gpo", "pe2") else method)
        if method in ("ape", "apo", "opro"):
            assert sum(s.counts["optimizer_calls"] for s in result.steps) == planned.total("optimizer_calls")
            assert all(s.counts.get("reused_score", 0) == 0 for s in result.steps)
        if method == "apo":
            assert result.steps[1].beam is not None and result.steps[1].beam[0] == result.steps[1].prompt
    # APO's gradients and PE2's feedback are the feedback requests; no other method asks for feedback.
    assert by_role["feedback"] == plan["apo"].tasks[0].method_calls["gradients"] + plan["pe2"].total("feedback_calls")
