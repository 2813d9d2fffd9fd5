"""A driver killed with SIGKILL after a completed step; `resume` finishes the run with the same result as an
undisturbed run, every step recorded once, and no completed step's work asked of the endpoint again."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import ray

from gpo_ray.api import optimize, resume
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.driver_kill import sigkill_when

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _lines(path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def sigkill_driver_after(config, cfg_file, *, lines: int, what: str) -> None:
    """`gpo-ray optimize` on `config` (written to `cfg_file`) in a subprocess joined to the test cluster, SIGKILLed once
    example/arithmetic's checkpoint has `lines` lines: a driver killed mid-run, as a user's would be."""
    cfg_file.write_text(json.dumps(config.public_dict()))
    checkpoint = config.run_dir / "checkpoints" / task_file_name("example/arithmetic")
    driver = subprocess.Popen(
        [sys.executable, "-m", "gpo_ray", "optimize", str(cfg_file), "--quiet",
         "--address", ray.get_runtime_context().gcs_address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    sigkill_when(driver, lambda: _lines(checkpoint) >= lines, timeout=180, what=what)


# The default, and a design-space variant whose steps carry feedback and a summary from one step to the next.
VARIANTS = {"default": {}, "feedback_summarized": {"direction": "feedback",
                                                   "momentum": {"content": "feedback", "update": "summarize"}}}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_resume_after_sigkill_matches_an_undisturbed_run(tmp_path, variant):
    optimizer = VARIANTS[variant]
    base = make_config(tmp_path / "cfg", "http://placeholder/v1", **optimizer)
    fake_cfg = fake_config(base).model_copy(update={"latency_s": 0.05})

    with ThreadedFake(fake_cfg) as fake:
        undisturbed = optimize(make_config(tmp_path / "a", fake.base_url, **optimizer))

    with ThreadedFake(fake_cfg) as fake:
        config = make_config(tmp_path / "b", fake.base_url, **optimizer)
        sigkill_driver_after(config, tmp_path / "run.yaml", lines=2, what="the first completed step")
        interrupted_at = {t: _lines(config.run_dir / "checkpoints" / task_file_name(t)) for t in undisturbed.tasks}
        assert not (config.run_dir / "results.json").exists() or \
            json.loads((config.run_dir / "results.json").read_text())["status"] == "running"
        answered_before = fake.stats()["completed"]

        resumed = resume(config.run_dir)
        stats = fake.stats()

    assert resumed.tasks == undisturbed.tasks
    total_steps = {t: len(r.steps) for t, r in undisturbed.tasks.items()}
    for task, steps in total_steps.items():
        lines = (config.run_dir / "checkpoints" / task_file_name(task)).read_text().splitlines()
        assert [json.loads(x)["step"] for x in lines] == list(range(steps + 1)), "every step recorded exactly once"
    assert any(n < total_steps[t] + 1 for t, n in interrupted_at.items()), "the kill happened mid-run"
    # Work of completed steps came from the run's cache: only requests in flight at the kill were asked again.
    assert stats["duplicates"] <= stats["completed"] - answered_before
    assert stats["duplicates"] <= 4 * 2 * 2, stats  # at most the evaluators' and refiners' slots in flight
    assert json.loads((config.run_dir / "results.json").read_text())["status"] == "completed"
