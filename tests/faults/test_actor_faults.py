"""Actors killed in the middle of a run: evaluators while scoring, a refiner while generating, the trajectory
memory between steps. Ray restarts the actor and retries the call; the run ends exactly as an undisturbed one,
and the endpoint is asked again only for the requests the killed actor had in flight.

A driver killed with SIGKILL and resumed: tests/integration/test_resume.py.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
import ray

from gpo_ray.api import optimize
from gpo_ray.memory.sharding import shard_of
from gpo_ray.runtime.processes import process_alive
from tests.faults.harness import (
    CANDIDATES,
    EVALUATOR_SLOTS,
    NUM_EVALUATORS,
    TASK,
    BackgroundRun,
    StartedActors,
    assert_same_as_undisturbed,
    fake_llm_config,
    memory_contents,
    run_config,
    two_fakes,
    wait_until,
)

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def restartable_kill(handle, pid: int) -> None:
    ray.kill(handle, no_restart=False)


def process_exit(handle, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def kill_and_wait(kill, handle) -> int:
    """Kill the actor's process and return its pid once it is gone (ray.kill returns before that)."""
    pid = ray.get(handle.pid.remote(), timeout=60)
    kill(handle, pid)
    wait_until(lambda: not process_alive(pid), what=f"the actor's process {pid} to end")
    return pid


def sent_requests(handles) -> list[int]:
    return [u["requests"] for u in ray.get([h.usage.remote() for h in handles], timeout=60)]


KILLS = [pytest.param(restartable_kill, id="ray.kill"), pytest.param(process_exit, id="SIGKILL")]


@pytest.mark.parametrize("kill", KILLS)
def test_an_evaluator_killed_while_scoring(kill, tmp_path, undisturbed):
    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(1)  # step 0 is scored; step 1's candidates are being generated
        task.pause()
        opt.resume()
        # Step 1 scores 3 candidates x 4 examples; with 4 slots per evaluator, 8 requests in service means
        # every evaluator is full: the one we kill is mid-scoring.
        task.wait_in_service(NUM_EVALUATORS * EVALUATOR_SLOTS)
        kill_and_wait(kill, actors.wait().evaluators[0])
        task.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert opt_stats["duplicates"] == 0
    # Exactly the killed evaluator's requests in flight were asked again (its answers died with it).
    assert task_stats["repeated_requests"] == EVALUATOR_SLOTS
    assert task_stats["duplicates"] <= EVALUATOR_SLOTS
    assert task_stats["unique_requests"] == undisturbed.task_stats["unique_requests"]


@pytest.mark.parametrize("kill", KILLS)
def test_a_refiner_killed_while_generating(kill, tmp_path, undisturbed):
    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(1)
        before = sent_requests(actors.wait().refiners)
        opt.hold_generation(2)
        # The refiner that sent the held requests is the one generating.
        after = sent_requests(actors.refiners)
        busy = [r for r, b, a in zip(actors.refiners, before, after, strict=True) if a - b == CANDIDATES]
        assert len(busy) == 1, (before, after)
        kill_and_wait(kill, busy[0])
        opt.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert task_stats["duplicates"] == 0
    assert opt_stats["repeated_requests"] == CANDIDATES  # the held generation, asked again
    assert opt_stats["duplicates"] <= CANDIDATES
    assert opt_stats["unique_requests"] == undisturbed.optimizer_stats["unique_requests"]


@pytest.mark.parametrize("kill", KILLS)
def test_the_memory_actor_killed_restarts_from_its_store(kill, tmp_path, undisturbed):
    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(3)  # steps 0-2 are in memory; step 3 retrieved from it
        old_pid = kill_and_wait(kill, actors.wait().memory)
        assert ray.get(actors.memory.pid.remote(), timeout=60) != old_pid, "restarted in a new process"
        opt.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert opt_stats["repeated_requests"] == 0 and task_stats["repeated_requests"] == 0
    # Nothing re-adds steps 0-2 after the kill, so finding them now means the restarted actor had them.
    assert memory_contents(config.run_dir / "chroma") == undisturbed.memory


RATE_LIMITED_RPM = 1200  # 20 a second: the run's ~100 task-model requests take several seconds


@pytest.mark.parametrize("kill", KILLS)
def test_the_rate_limiter_killed_mid_run_restarts_and_the_limit_still_holds(kill, tmp_path, undisturbed):
    """Four evaluators share the task model's requests_per_minute through the run's limiter; it is killed while
    they are scoring. Ray restarts it (empty, which keeps the bound: gpo_ray/llm/run_limits.py), the clients wait
    for it, and the run ends as an undisturbed one. The bound is checked on 3 s windows of the endpoint's record,
    as in tests/integration/test_run_wide_limits.py (which says why a shorter window)."""
    from gpo_ray.testing.stats import most_in_any_window
    from tests.integration.test_run_wide_limits import window_bound

    with two_fakes(task=fake_llm_config(record_timeline=True)) as (opt, task):
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url,
                            requests_per_minute=RATE_LIMITED_RPM)
        config = config.model_copy(update={"cluster": config.cluster.model_copy(update={"num_evaluators": 4})})
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        limiter = actors.wait().limiter
        assert limiter is not None, "a run with requests_per_minute starts a limiter"
        wait_until(lambda: task.stats()["requests"] >= 30, what="the evaluators to be scoring")
        old_pid = kill_and_wait(kill, limiter)
        wait_until(lambda: task.stats()["requests"] >= 60, what="scoring to go on after the kill")
        assert ray.get(limiter.pid.remote(), timeout=60) != old_pid, "restarted in a new process"
        granted_after_restart = ray.get(limiter.granted.remote(), timeout=60)
        results = run.join()
        times = [start for start, _, role in task.timeline() if role == "task"]

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert sum(g["requests"] for key, g in granted_after_restart.items() if key.startswith("task_model")) > 0
    assert most_in_any_window(times, 3.0) <= window_bound(RATE_LIMITED_RPM, 3.0)


def test_a_memory_shard_killed_restarts_from_its_store(tmp_path, undisturbed):
    """The memory in three shards (one actor and one store each): the task's shard killed between steps restarts
    from its own store and the run ends as the undisturbed one-shard run, its memory in the shard it hashes to."""
    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        config = config.model_copy(update={"cluster": config.cluster.model_copy(update={"memory_shards": 3})})
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(3)  # steps 0-2 are in the task's shard
        assert len(actors.wait().memory_shards) == 3
        shard = actors.memory_shards[shard_of(TASK, 3)]
        old_pid = kill_and_wait(process_exit, shard)
        assert ray.get(shard.pid.remote(), timeout=60) != old_pid, "restarted in a new process"
        opt.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert opt_stats["repeated_requests"] == 0 and task_stats["repeated_requests"] == 0
    assert json.loads((config.run_dir / "memory.json").read_text())["shards"] == 3
    assert sorted(p.name for p in (config.run_dir / "chroma").iterdir()) == ["shard-0", "shard-1", "shard-2"]
    # memory_contents also fails if the task is in a shard other than the one its name hashes to.
    assert memory_contents(config.run_dir / "chroma") == undisturbed.memory


@pytest.mark.parametrize("shards", [1, 3])
def test_a_memory_actor_killed_with_unflushed_steps_replays_its_pending_log(shards, tmp_path, undisturbed):
    """Written behind with a flush interval far longer than the run: steps 0-2 are acknowledged but only in the
    store's pending log when the actor (the task's shard) is SIGKILLed. The restarted actor replays the log on
    opening its store, and the run and its memory end as the undisturbed run's."""
    from gpo_ray.memory.store import PENDING_LOG

    with two_fakes() as (opt, task):
        opt.pause()
        config = run_config(tmp_path / "run", optimizer_url=opt.base_url, task_url=task.base_url)
        config = config.model_copy(update={"cluster": config.cluster.model_copy(
            update={"memory_shards": shards, "memory_flush_interval_s": 3600})})
        actors = StartedActors()
        run = BackgroundRun(lambda: optimize(config, on_actors_started=actors.started))
        opt.hold_generation(3)  # steps 0-2 acknowledged; step 3 retrieved from memory
        k = shard_of(TASK, shards)
        memory = actors.wait().memory_shards[k]
        pending_log = config.run_dir / "chroma" / (f"shard-{k}" if shards > 1 else "") / PENDING_LOG
        def unflushed_steps() -> list[int]:
            if not pending_log.is_file():
                return []
            lines = pending_log.read_text().splitlines()
            rows = []
            for line in lines:
                try:
                    rows += [row[2] for row in json.loads(line)["rows"].values()]
                except json.JSONDecodeError:  # a line being written: read again
                    return []
            return sorted(m["step"] for m in rows if m["kind"] in ("initial", "chosen"))

        # A step's memory write is not awaited by the step (controller/services.py): it arrives shortly after.
        wait_until(lambda: unflushed_steps() == [0, 1, 2], what="steps 0-2 in the pending log")
        old_pid = kill_and_wait(process_exit, memory)
        assert ray.get(memory.pid.remote(), timeout=60) != old_pid, "restarted in a new process"
        opt.resume()
        results = run.join()
        opt_stats, task_stats = opt.stats(), task.stats()

    assert_same_as_undisturbed(config.run_dir, results.tasks, undisturbed.tasks)
    assert opt_stats["repeated_requests"] == 0 and task_stats["repeated_requests"] == 0
    assert pending_log.read_text() == "", "the run's stop flushed what was staged"
    assert memory_contents(config.run_dir / "chroma") == undisturbed.memory


@pytest.mark.parametrize("kill", KILLS)
def test_a_restarted_actor_says_so_in_its_log(kill, tmp_path):
    """Ray retries a killed actor's calls on its restart, so the driver sees nothing: the actor's own log line is
    what shows the loss (the chaos soak counts these)."""
    from gpo_ray.actors.refiner import RefinerActor
    from gpo_ray.api import ACTOR_OPTIONS
    from gpo_ray.config import LLMRoleConfig

    role = LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m")  # never called
    actor = RefinerActor.options(**ACTOR_OPTIONS).remote(role, base_url=role.base_url, model="m", cache_dir=None)
    first_pid, first_restarted = ray.get(actor.started.remote(), timeout=60)
    kill_and_wait(kill, actor)
    pid, restarted = ray.get(actor.started.remote(), timeout=60)
    logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"

    def logged() -> list[str]:
        return [line for f in logs.glob(f"worker-*-{pid}.out") for line in f.read_text().splitlines()
                if "actor_started" in line]

    wait_until(lambda: bool(logged()), what="the restarted actor's start line")
    ray.kill(actor)
    assert (first_restarted, restarted) == (False, True) and pid != first_pid
    (line,) = logged()
    assert "warning" in line and "actor=refiner" in line and "restarted=True" in line, line
