"""A misbehaving endpoint: rate-limit bursts with Retry-After, 500s, requests that hang past the timeout,
malformed bodies, answers without the candidate markers - the run completes with the undisturbed run's
prompts and scores and reports every kind of error; an endpoint down for longer than the retry budget
stops the run with exit 1 naming it, and `resume` continues once it is back."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from gpo_ray.api import optimize
from gpo_ray.cli import main

from tests.faults.harness import (
    BackgroundRun,
    assert_same_as_undisturbed,
    checkpoint_steps,
    fake_llm_config,
    free_port,
    json_tasks,
    run_config,
    two_fakes,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

# What the transport calls each injected fault (usage "errors" by kind).
ERROR_KIND = {"429": "rate_limited", "500": "server_error", "hang": "timeout", "malformed": "malformed"}


def _trajectory(result):
    return [(s.step, s.prompt, s.eval_score, s.candidates) for s in result.steps]


def test_transient_faults_are_retried_counted_and_change_nothing(tmp_path, undisturbed):
    transient = dict(retry_after_s=0.2, hang_s=5.0, error_rate_500=0.1)
    # The task model: a burst of 429s at the start, then 10% 500s and a few hangs and malformed bodies.
    task_cfg = fake_llm_config(fail_first_n={"429": 6}, fault_rates={"hang": 0.04, "malformed": 0.05}, **transient)
    # The optimizer: its first three requests fail one way each, and 30% of its answers lack the markers.
    opt_cfg = fake_llm_config(fail_first_n={"malformed": 1, "hang": 1, "500": 1}, fault_rates={"nomarkers": 0.3},
                              **transient)
    with two_fakes(opt_cfg, task_cfg) as (opt, task):
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url,
                            timeout_s=1.0, max_retries=8)
        results = optimize(config)
        opt_stats, task_stats = opt.stats(), task.stats()

    ((name, result),) = results.tasks.items()
    expected = undisturbed.tasks[name]
    assert _trajectory(result) == _trajectory(expected), "the same candidates, chosen prompts and scores"
    assert (result.best_prompt, result.best_test_score) == (expected.best_prompt, expected.best_test_score)
    assert checkpoint_steps(config.run_dir) == list(range(len(expected.steps) + 1))

    doc = json.loads((config.run_dir / "results.json").read_text())
    assert doc["status"] == "completed"
    for role, stats in (("task_model", task_stats), ("optimizer", opt_stats)):
        faults = {f: n for f, n in stats["faults"].items() if f != "nomarkers"}
        usage = doc["usage"][role]
        assert usage["errors"] == {ERROR_KIND[f]: n for f, n in faults.items()}, role
        assert usage["retries"] == sum(faults.values()), f"{role}: every failed attempt was retried"
        assert usage["requests"] == stats["requests"], f"{role}: the report counts what the endpoint saw"
        assert stats["duplicates"] == 0, f"{role}: nothing answered twice"
        assert stats["repeated_requests"] == sum(faults.values()), f"{role}: repeats are the forced retries only"
    assert set(task_stats["faults"]) == {"429", "500", "hang", "malformed"}, task_stats["faults"]
    assert task_stats["faults"]["429"] == 6
    assert set(opt_stats["faults"]) == {"500", "hang", "malformed", "nomarkers"}, opt_stats["faults"]

    # Replies without <START>/<END> still yield their candidate (the fallback) and are counted per step.
    counts = Counter()
    for step in doc["tasks"][name]["steps"]:
        counts.update(step["counts"])
    assert counts["extracted:fallback"] == opt_stats["faults"]["nomarkers"]
    assert counts["extracted:fallback"] + counts["extracted:markers"] == sum(
        s.counts.get("extracted:markers", 0) for s in expected.steps)


def test_endpoint_down_past_the_retry_budget_stops_with_exit_1_and_resume_continues(tmp_path, capsys, undisturbed):
    port = free_port()
    with two_fakes(task_port=port) as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url, max_retries=2)
        cfg_file = tmp_path / "run.yaml"
        cfg_file.write_text(json.dumps(config.public_dict()))
        run = BackgroundRun(lambda: main(["optimize", str(cfg_file), "--quiet"]))
        opt.hold_generation(2)  # steps 0 and 1 are done
        task.stop()  # the task model goes away before step 2 is scored
        opt.resume()
        assert run.join() == 1
        err = capsys.readouterr().err.strip()
        assert checkpoint_steps(config.run_dir) == [0, 1], "the completed steps are kept, nothing more"
        stopped = json.loads((config.run_dir / "results.json").read_text())

        task.start()  # back, on the same port
        assert main(["resume", str(config.run_dir), "--quiet"]) == 0
        opt_stats, task_stats = opt.stats(), task.stats()

    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert f"127.0.0.1:{port}" in err and "resume" in err, err
    assert "no answer after 3 attempts" in err, err
    assert stopped["status"] == "stopped" and len(stopped["tasks"]["example/arithmetic"]["steps"]) == 1
    assert stopped["usage"]["task_model"]["errors"]["connection"] >= 3, "the report counts the failed attempts"
    assert_same_as_undisturbed(config.run_dir, json_tasks(config.run_dir), undisturbed.tasks)
    # Completed work came from the run's cache: nothing answered was asked again. (A request that reached the
    # stopping server but was never answered may be asked again on resume, rightly.)
    assert opt_stats["duplicates"] == 0 and task_stats["duplicates"] == 0
    assert opt_stats["repeated_requests"] == 0



def test_failed_attempts_reach_usage_json_while_no_step_completes(tmp_path):
    """Issue 17: usage.json was rewritten only when a step completed, so a driver killed while its calls were being
    retried (a 429 burst, stalls) lost every failed attempt since the last step. Now it is kept current while no
    step completes: here the task model fails its first 3 requests and then holds every answer, so no step can
    complete, and usage.json must count the 3 failed attempts anyway."""
    with two_fakes(task=fake_llm_config(fail_first_n={"500": 3})) as (opt, task):
        task.pause()  # answered requests wait in service; the 500s are sent before that, at once
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        run = BackgroundRun(lambda: optimize(config))

        def server_errors_in_usage() -> int:
            try:
                return json.loads((config.run_dir / "usage.json").read_text())["task_model"]["errors"]["server_error"]
            except (OSError, ValueError, KeyError):
                return 0

        try:
            wait_until(lambda: task.stats()["faults"].get("500", 0) == 3 and server_errors_in_usage() == 3,
                       what="usage.json to count the task model's 3 failed attempts")
            assert checkpoint_steps(config.run_dir) == [], "written with no step completed"
        finally:
            task.resume()
        results = run.join()
    assert results.status == "completed"
    assert json.loads((config.run_dir / "usage.json").read_text())["task_model"]["errors"] == {"server_error": 3}
