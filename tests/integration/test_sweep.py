"""A sweep of 4 variants x 3 tasks x 2 seeds against the fake endpoint, on the shared local Ray cluster:

- every sub-run's results equal those of the same variant and seed run alone (`optimize`, its own cache), and the
  sweep sends the endpoint fewer requests than those 8 runs together (its shared response cache);
- a sweep driver SIGKILLed mid-way and resumed (`gpo-ray resume SWEEP_DIR`) ends with every sub-run's results equal
  to the uninterrupted sweep's, every step checkpointed once;
- `gpo-ray report SWEEP_DIR` writes the ablation table.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import ray

from gpo_ray.api import optimize
from gpo_ray.grid import grid_from_dict
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.sweep import resume_sweep, sweep
from gpo_ray.testing import ThreadedFake
from tests.driver_kill import sigkill_when
from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.integration.usage_checks import ENDPOINT_ROLES, assert_files_agree_with_the_endpoint

pytestmark = pytest.mark.usefixtures("ray_cluster")

AXES = {"optimizer.update": ["generate", "edit"], "optimizer.budget_in_prompt": [True, False]}
SEEDS = [0, 1]


def base_config(root, base_url: str) -> dict:
    config = make_config(root, base_url, epochs=1).public_dict()  # example/arithmetic, sums/a, sums/b; 2 steps each
    config.pop("run_dir")
    return config


def endpoint_settings(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake")
    return fake_config(make_config(root, "http://placeholder/v1")).model_copy(update={"latency_s": 0.02})


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory):
    with ThreadedFake(endpoint_settings(tmp_path_factory)) as fake:
        yield fake


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The sweep on an endpoint of its own: whatever other tests leave behind (a killed driver's last requests) never
    reaches the counts it is compared with."""
    root = tmp_path_factory.mktemp("sweep")
    with ThreadedFake(endpoint_settings(tmp_path_factory)) as own:
        grid = grid_from_dict({"base": base_config(root, own.base_url), "axes": AXES, "seeds": SEEDS}, folder=root)
        results = sweep(grid, sweep_dir=root / "sweep")
        stats = own.stats()
    return results, stats, root


def on_endpoint(config, base_url: str):
    """The config with both roles sent to `base_url` (what is asked is unchanged)."""
    return config.model_copy(update={role: getattr(config, role).model_copy(update={"base_url": base_url})
                                     for role in ("task_model", "optimizer_model")})


def checkpoint_steps(run_dir, task: str) -> list[int]:
    path = run_dir / "checkpoints" / task_file_name(task)
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_sweep_equals_its_variants_run_one_by_one_with_fewer_endpoint_requests(uninterrupted, tmp_path_factory,
                                                                              tmp_path):
    results, sweep_stats, root = uninterrupted
    sweep_requests = sweep_stats["requests"]
    assert len(results.runs) == 8 and results.status == "completed"
    assert not usage_resets(root / "sweep" / "logs" / "driver.jsonl"), "no actor restarted: nothing carried over"
    alone_requests = 0
    for name, run in results.runs.items():
        # Each run alone on a fresh endpoint of its own, with its own cache in its own directory.
        with ThreadedFake(endpoint_settings(tmp_path_factory)) as fresh:
            config = on_endpoint(run_config_of(root / "sweep" / "runs" / name), fresh.base_url)
            alone = optimize(config.model_copy(update={"run_dir": tmp_path / name}))
            stats = fresh.stats()
        alone_requests += stats["requests"]
        assert_files_agree_with_the_endpoint(alone.run_dir, stats)
        assert run.tasks == alone.tasks, f"{name}: the sweep changed what the run found"
        # What a variant asked for is counted whoever sent it first (and whatever the cache answered): its calls
        # equal those of the run alone.
        for role in ("optimizer", "task_model"):
            assert run.usage[role]["calls"] == alone.usage[role]["calls"], (name, role)
        assert len(run.tasks) == 3
    assert sweep_requests < alone_requests, (sweep_requests, alone_requests)
    # Each sub-run's usage counts what it asked for; the requests sent add up to what the endpoint saw, per role.
    # (A sweep without a judge metric has no judge role in its usage: it counts 0, and the endpoint saw none.)
    for role, fake_roles in ENDPOINT_ROLES.items():
        assert sum(r.usage.get(role, {}).get("requests", 0) for r in results.runs.values()) == sum(
            sweep_stats["roles"].get(r, 0) for r in fake_roles), role
    assert sum(u.get("prompt_tokens", 0) + u.get("completion_tokens", 0)
               for r in results.runs.values() for role, u in r.usage.items()) == sweep_stats["total_tokens"]
    print(f"endpoint requests: sweep {sweep_requests}, the 8 runs one by one {alone_requests}")


def usage_resets(log_file) -> list[str]:
    return [line for line in log_file.read_text().splitlines() if '"usage_counter_reset"' in line]


def run_config_of(run_dir):
    from gpo_ray.runtime.run_dir import RunDirectory

    return RunDirectory(run_dir).load_config()


def test_killed_sweep_resumes_to_the_uninterrupted_results(uninterrupted, endpoint, tmp_path):
    results, _, _ = uninterrupted
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text(json.dumps({"base": base_config(tmp_path / "cfg", endpoint.base_url), "axes": AXES,
                                     "seeds": SEEDS}))
    sweep_dir = tmp_path / "sweep"
    runs_dir = sweep_dir / "runs"
    tasks = ["example/arithmetic", "sums/a", "sums/b"]
    total_lines = sum(len(r.steps) + 1 for run in results.runs.values() for r in run.tasks.values())

    def lines() -> int:
        return sum(len(checkpoint_steps(d, t)) for d in runs_dir.glob("*") for t in tasks) if runs_dir.is_dir() else 0

    driver = subprocess.Popen(
        [sys.executable, "-m", "gpo_ray", "sweep", str(grid_file), "--run-dir", str(sweep_dir), "--quiet",
         "--address", ray.get_runtime_context().gcs_address],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    sigkill_when(driver, lambda: lines() >= total_lines // 3)
    interrupted_at = lines()
    assert 0 < interrupted_at < total_lines, "the kill happened mid-sweep"

    assert subprocess.run([sys.executable, "-m", "gpo_ray", "resume", str(sweep_dir), "--quiet", "--address",
                           ray.get_runtime_context().gcs_address], capture_output=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()}).returncode == 0
    resumed = resume_sweep(sweep_dir)  # a finished sweep resumes to the same results without new work
    assert set(resumed.runs) == set(results.runs)
    for name, run in results.runs.items():
        assert resumed.runs[name].tasks == run.tasks, name
        for task, r in run.tasks.items():
            assert checkpoint_steps(runs_dir / name, task) == list(range(len(r.steps) + 1)), "each step once"

    report = subprocess.run([sys.executable, "-m", "gpo_ray", "report", str(sweep_dir), "--format", "md",
                             "--output", "-"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert report.returncode == 0, report.stderr
    table = report.stdout.split("## Ablation")[1]
    for variant in results.variants.values():
        assert variant.replace("_", "\\_") in table
    assert "| 2/2 |" in table


DESIGN_SPACE = {  # the axes as named variants: every extra call goes through the shared pools
    "gpo": {},
    "feedback": {"optimizer.direction": "feedback"},
    "feedback-momentum-summarized": {"optimizer.direction": "feedback",
                                     "optimizer.momentum": {"content": "feedback", "update": "summarize"}},
    "edit-with-feedback-wo-lr": {"optimizer.direction": "feedback", "optimizer.update": "edit",
                                 "optimizer.budget_in_prompt": False},
}


def test_a_sweep_of_the_design_space_equals_each_variant_run_alone(endpoint, tmp_path):
    """Feedback scoring (with the task model's answers) and feedback/summarize requests of several sub-runs share
    the pools; each sub-run still finds what it finds alone, with the same extra calls counted."""
    base = base_config(tmp_path / "cfg", endpoint.base_url)
    base["tasks"] = ["example/arithmetic"]
    base["optimizer"]["epochs"] = 2
    grid = grid_from_dict({"base": base, "variants": DESIGN_SPACE, "seeds": [0]}, folder=tmp_path)
    results = sweep(grid, sweep_dir=tmp_path / "sweep")
    assert results.status == "completed" and len(results.runs) == 4
    for name, run in results.runs.items():
        config = run_config_of(tmp_path / "sweep" / "runs" / name).model_copy(update={"run_dir": tmp_path / name})
        alone = optimize(config)
        assert run.tasks == alone.tasks, name
        for role in ("optimizer", "task_model"):
            assert run.usage[role]["calls"] == alone.usage[role]["calls"], (name, role)
        steps = run.tasks["example/arithmetic"].steps
        feedback_calls = sum(s.counts.get("feedback_calls", 0) for s in steps)
        assert feedback_calls == (len(steps) if "feedback" in name else 0), name


def test_a_warm_sweep_s_first_calls_go_out_from_the_driver_and_it_equals_a_cold_sweep(tmp_path):
    """A sweep gets the warm start a run has (launch/session.py): with its actors held back until every sub-run's
    initial prompt is checkpointed, those calls went out from the driver; what each sub-run found and asked for
    equals a sweep whose every call went through the actors, and every request sent is counted."""
    outcomes = {}
    for warm in (True, False):
        root = tmp_path / ("warm" if warm else "cold")
        with ThreadedFake(endpoint_settings_at(root)) as fake:
            base = base_config(root / "cfg", fake.base_url)
            base["tasks"] = ["example/arithmetic"]
            base["cluster"]["warm_start"] = warm
            grid = grid_from_dict({"base": base, "axes": {"optimizer.update": ["generate", "edit"]}, "seeds": [0]},
                                  folder=root)
            sweep_dir = root / "sweep"

            def hold(_actors, sweep_dir=sweep_dir) -> None:
                deadline = time.monotonic() + 120
                runs = sorted((sweep_dir / "runs").glob("*"))
                while len(runs) < 2 or not all(checkpoint_steps(d, "example/arithmetic") for d in runs):
                    assert time.monotonic() < deadline, "the sub-runs' initial prompts were not scored in the driver"
                    time.sleep(0.05)
                    runs = sorted((sweep_dir / "runs").glob("*"))

            results = sweep(grid, sweep_dir=sweep_dir, on_actors_started=hold if warm else None)
            stats = fake.stats()
        assert results.status == "completed"
        for role, fake_roles in ENDPOINT_ROLES.items():
            assert sum(r.usage.get(role, {}).get("requests", 0) for r in results.runs.values()) == sum(
                stats["roles"].get(r, 0) for r in fake_roles), (warm, role)
        done = [json.loads(line) for line in (sweep_dir / "logs" / "driver.jsonl").read_text().splitlines()
                if '"warm_start_done"' in line]
        outcomes[warm] = results, done
    (warm_results, warm_done), (cold_results, cold_done) = outcomes[True], outcomes[False]
    assert len(warm_done) == 1 and warm_done[0]["in_process_items"] > 0 and warm_done[0]["actors_started"]
    assert cold_done == [], "warm_start: false keeps every call of the sweep on the actors"
    for name, run in warm_results.runs.items():
        assert run.tasks == cold_results.runs[name].tasks, f"{name}: the warm start changed what the sub-run found"
        for role in ("optimizer", "task_model"):
            assert run.usage[role]["calls"] == cold_results.runs[name].usage[role]["calls"], (name, role)


def endpoint_settings_at(root):
    return fake_config(make_config(root / "fake", "http://placeholder/v1")).model_copy(update={"latency_s": 0.02})
