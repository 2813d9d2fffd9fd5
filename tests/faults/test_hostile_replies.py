"""A hostile endpoint (issue 17): 15% of replies are a 20 MB body, or headers and a first few bytes and then
nothing. The run finishes every step with the undisturbed run's prompts and scores, usage.json counts each kind
(`oversized`, `stalled`), nothing oversized is cached, and the response cache stays small."""

from __future__ import annotations

import json

import pytest

from gpo_ray.api import optimize

from tests.faults.harness import TOTAL_STEPS, checkpoint_steps, fake_llm_config, run_config, two_fakes

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

ERROR_KIND = {"oversized": "oversized", "stall": "stalled"}


def _trajectory(result):
    return [(s.step, s.prompt, s.eval_score, s.candidates) for s in result.steps]


@pytest.mark.timeout(900)  # generous: a guard against a hung run, not a timing assertion
def test_oversized_and_stalled_replies_are_cut_counted_retried_and_change_nothing(tmp_path, undisturbed):
    hostile = fake_llm_config(fault_rates={"oversized": 0.075, "stall": 0.075}, oversized_bytes=20_000_000)
    with two_fakes(hostile, hostile) as (opt, task):
        # read_timeout_s: a stall is cut after 1 s of silence, far sooner than the 60 s per-request timeout.
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url,
                            read_timeout_s=1.0, max_retries=8)
        results = optimize(config)
        opt_stats, task_stats = opt.stats(), task.stats()

    ((name, result),) = results.tasks.items()
    expected = undisturbed.tasks[name]
    assert len(result.steps) == TOTAL_STEPS and checkpoint_steps(config.run_dir) == list(range(TOTAL_STEPS + 1))
    assert _trajectory(result) == _trajectory(expected), "the same candidates, chosen prompts and scores"

    usage = json.loads((config.run_dir / "usage.json").read_text())
    assert json.loads((config.run_dir / "results.json").read_text())["status"] == "completed"
    for role, stats in (("task_model", task_stats), ("optimizer", opt_stats)):
        assert usage[role]["errors"] == {ERROR_KIND[f]: n for f, n in stats["faults"].items()}, role
        assert usage[role]["retries"] == sum(stats["faults"].values()), role
    faults = task_stats["faults"]
    assert faults.get("oversized", 0) > 0 and faults.get("stall", 0) > 0, faults
    # The client stopped reading each oversized body early instead of buffering 20 MB of it.
    assert task_stats["oversized_bytes_sent"] < faults["oversized"] * 20_000_000 / 2
    cache_bytes = sum(p.stat().st_size for p in (config.run_dir / "cache").rglob("*") if p.is_file())
    assert cache_bytes < 5_000_000, f"the response cache holds {cache_bytes} bytes"
