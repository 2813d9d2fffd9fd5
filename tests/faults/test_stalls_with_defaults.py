"""Stalled replies with the default settings (issue 26): 15% of the distinct requests get their headers and the first
bytes of their body, then nothing. With no setting changed, a 1-epoch run finishes within 3x the time of the same
run against the endpoint undisturbed (both measured here), with the same steps, and usage.json counts every stall
and its retry. (Before the idle-read limit each stall held its request and its slot for the 10 s read timeout: the
issue's navigate run took 16x as long.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import RunConfig

from tests.faults.harness import checkpoint_steps, fake_llm_config, run_config, two_fakes

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

STALL_RATE = 0.15
LATENCY_S = (0.05, 0.15)  # the endpoint's time per answered request, by a hash of the request


def one_epoch(run_dir: Path, *, optimizer_url: str, task_url: str) -> RunConfig:
    """The fault tests' run (tests/faults/harness.py) for one epoch, every reliability setting at its default."""
    config = run_config(run_dir, optimizer_url=optimizer_url, task_url=task_url)
    return config.model_copy(update={"optimizer": config.optimizer.model_copy(update={"epochs": 1})})


def timed_run(run_dir: Path, *, stall_rate: float) -> tuple[float, Any, dict[str, dict[str, Any]]]:
    """(wall seconds, the run's results, the faults each role's endpoint served)."""
    endpoint = fake_llm_config(latency_s=LATENCY_S, fault_rates={"stall": stall_rate} if stall_rate else {})
    with two_fakes(endpoint, endpoint) as (opt, task):
        config = one_epoch(run_dir, optimizer_url=opt.base_url, task_url=task.base_url)
        started = time.monotonic()
        results = optimize(config)
        took = time.monotonic() - started
        served = {"optimizer": opt.stats()["faults"], "task_model": task.stats()["faults"]}
    return took, results, served


@pytest.mark.timeout(900)  # generous: a guard against a hung run, not a timing assertion
def test_stalled_replies_with_the_default_settings_cost_little_and_change_nothing(tmp_path):
    calm_s, calm, _ = timed_run(tmp_path / "calm", stall_rate=0.0)
    stalled_s, stalled, served = timed_run(tmp_path / "stalled", stall_rate=STALL_RATE)

    assert stalled.status == calm.status == "completed"
    assert stalled.tasks == calm.tasks, "the same steps: prompts, candidates and scores"
    ((name, result),) = stalled.tasks.items()
    assert checkpoint_steps(tmp_path / "stalled", name) == list(range(len(result.steps) + 1)), "each step once"
    usage = json.loads((tmp_path / "stalled" / "usage.json").read_text())
    for role, faults in served.items():
        stalls = faults.get("stall", 0)
        assert usage[role]["errors"] == ({"stalled": stalls} if stalls else {}), role
        assert usage[role]["retries"] == stalls, role
    assert served["task_model"].get("stall", 0) > 0, "the endpoint stalled replies"
    assert stalled_s < 3 * calm_s, f"{stalled_s:.1f} s with stalls, {calm_s:.1f} s without"
