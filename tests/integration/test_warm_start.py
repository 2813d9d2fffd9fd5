"""The warm start (controller/warm_start.py): a run's first calls go out from the driver while Ray and the actors
start - every task's first retrieval_k steps, generation and retrieval included - and the run comes out exactly as
one whose every call went through the actors - same results.json, same usage.json, every endpoint request
counted - and a start that fails stops those calls with its one error line."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from ray import cloudpickle

from gpo_ray.api import RunActors, optimize
from gpo_ray.launch import session as launch_session
from gpo_ray.errors import RunFailed
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import ThreadedFake

from gpo_ray.config import ClusterSettings, TaskSource
from tests.integration.test_e2e_optimize import fake_config, make_config, write_sum_task

pytestmark = pytest.mark.usefixtures("ray_cluster")

# The embedder below is built inside the memory actor's worker, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT_S = 120.0


def driver_events(run_dir: Path, event: str) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "logs" / "driver.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("event") == event]


def checkpointed(run_dir: Path, tasks: list[str], step: int) -> bool:
    for name in tasks:
        path = run_dir / "checkpoints" / task_file_name(name)
        if not path.is_file() or f'"step": {step}' not in path.read_text(encoding="utf-8"):
            return False
    return True


def held_until_step(run_dir: Path, tasks: list[str], step: int, fake: ThreadedFake, seen: dict):
    """An `on_actors_started` that keeps the actors from the run until every task's `step` is checkpointed: those
    steps' scoring, generation and retrieval are then done in the driver. `seen`: the endpoint's stats then."""

    def hold(_actors: RunActors) -> None:
        deadline = time.monotonic() + WAIT_S
        while not checkpointed(run_dir, tasks, step):
            assert time.monotonic() < deadline, f"step {step} was not checkpointed while the actors were held back"
            time.sleep(0.05)
        seen.update(fake.stats())

    return hold


def run_once(config, *, warm: bool, hold: bool = False, seen: dict | None = None) -> tuple[dict, dict]:
    """(results.json, the endpoint's stats) of one run against a fresh fake endpoint; with `hold`, the actors are
    held back until every task's step retrieval_k is checkpointed (`seen`: the endpoint's stats then)."""
    with ThreadedFake(fake_config(config)) as fake:
        config = config.model_copy(update={
            "task_model": config.task_model.model_copy(update={"base_url": fake.base_url}),
            "optimizer_model": config.optimizer_model.model_copy(update={"base_url": fake.base_url}),
            "cluster": config.cluster.model_copy(update={"warm_start": warm}),
        })
        names = [t.name for t in resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)]
        last_early = config.optimizer.retrieval_k  # its retrieval is over retrieval_k prompts: no memory
        optimize(config, on_actors_started=held_until_step(config.run_dir, names, last_early, fake,
                                                           seen if seen is not None else {}) if hold else None)
        stats = fake.stats()
    return json.loads((config.run_dir / "results.json").read_text()), stats


def comparable(doc: dict) -> dict:
    """What the run found and spent; not the concurrency each endpoint settled at (a level learned from timing)."""
    usage = {role: {k: v for k, v in u.items() if k != "concurrency"} for role, u in doc["usage"].items()}
    return {"status": doc["status"], "tasks": doc["tasks"], "usage": usage}


def test_a_run_whose_first_calls_went_out_from_the_driver_equals_one_whose_calls_all_went_through_actors(tmp_path):
    base = make_config(tmp_path, "http://placeholder/v1")
    warm_cfg = base.model_copy(update={"run_dir": tmp_path / "warm"})
    cold_cfg = base.model_copy(update={"run_dir": tmp_path / "cold"})

    before_actors: dict = {}
    warm, warm_stats = run_once(warm_cfg, warm=True, hold=True, seen=before_actors)
    cold, cold_stats = run_once(cold_cfg, warm=False)

    assert base.optimizer.retrieval_k == 3
    assert before_actors["roles"].get("optimizer", 0) >= 3 * 3, "steps 1 to 3 of the 3 tasks generated in the driver"
    (done,) = driver_events(warm_cfg.run_dir, "warm_start_done")
    assert done["in_process_items"] > 0 and done["in_process_generations"] > 0 and done["actors_started"], done
    assert not driver_events(cold_cfg.run_dir, "warm_start_done"), "warm_start: false keeps every call on the actors"
    assert comparable(warm) == comparable(cold), "the warm start changed what the run found or what it spent"
    for doc, stats in ((warm, warm_stats), (cold, cold_stats)):
        usage = doc["usage"]
        assert usage["optimizer"]["requests"] == stats["roles"]["optimizer"], "an optimizer request went uncounted"
        assert usage["task_model"]["requests"] == stats["roles"]["task"], "a task-model request went uncounted"


def test_a_failed_start_stops_the_driver_s_calls_with_the_start_s_one_line(tmp_path, monkeypatch):
    def failing_start(*_args, **_kwargs):
        time.sleep(1.0)  # the driver's first calls are under way by then
        raise RunFailed("cannot start a local Ray cluster: no space left on device")

    monkeypatch.setattr(launch_session, "start_actors", failing_start)
    config = make_config(tmp_path, "http://placeholder/v1")
    with ThreadedFake(fake_config(config)) as fake:
        config = make_config(tmp_path / "x", fake.base_url)
        with pytest.raises(RunFailed) as failed:
            optimize(config)
        served = fake.stats()["requests"]
        assert served > 0, "the driver's first calls had begun"
        time.sleep(0.5)
        assert fake.stats()["requests"] == served, "the driver kept calling the endpoint after the run stopped"
    assert str(failed.value) == "cannot start a local Ray cluster: no space left on device"
    assert json.loads((config.run_dir / "results.json").read_text())["status"] == "stopped"


class FullDiskEmbedder:
    """The memory actor's embedder on a full disk: every add fails."""

    def embed(self, texts):
        raise OSError(28, "No space left on device")


def test_a_memory_write_that_fails_while_the_steps_go_on_stops_the_run_with_its_one_line(tmp_path):
    config = make_config(tmp_path, "http://placeholder/v1")
    with ThreadedFake(fake_config(config)) as fake:
        config = make_config(tmp_path / "x", fake.base_url)
        with pytest.raises(RunFailed) as failed:
            optimize(config, embedder_factory=FullDiskEmbedder)
    assert re.fullmatch(r"cannot store step 0 of \S+ in the trajectory memory: \[Errno 28\] No space left on device; "
                        r"the step is checkpointed, `gpo-ray resume \S+` continues once that is fixed",
                        str(failed.value)), str(failed.value)
    assert json.loads((config.run_dir / "results.json").read_text())["status"] == "stopped"


@pytest.mark.parametrize("tasks", [["sums/a"], ["example/arithmetic", "sums/*", "sums_more/*"]])
def test_a_small_run_on_this_machine_alone_scores_in_its_driver_and_a_larger_one_gets_actors(tmp_path, tasks):
    """The session's cluster is one node, the driver's (as a notebook's `ray.init()` is): a run of at most 3 tasks
    with its actor counts unset scores and asks the optimizer from its driver, as on a cluster it starts itself, so
    its only actor is the memory; a run of more tasks gets two refiners and two evaluators (one per 2 CPUs, at least 2)."""
    config = make_config(tmp_path, "http://placeholder/v1", epochs=1)
    write_sum_task(tmp_path / "data" / "sums_c", seed=3)
    more = TaskSource(name="sums_more/c", format="jsonl", path=tmp_path / "data" / "sums_c", metric="numeric")
    with ThreadedFake(fake_config(config)) as fake:
        role = config.task_model.model_copy(update={"base_url": fake.base_url})
        config = config.model_copy(update={
            "tasks": tasks, "task_sources": [*config.task_sources, more], "cluster": ClusterSettings(),
            "task_model": role, "optimizer_model": role.model_copy(update={"temperature": 1.0})})
        started: list[RunActors] = []
        results = optimize(config, on_actors_started=started.append)
    assert results.status == "completed"
    [placed] = driver_events(config.run_dir, "scoring_placed")
    [actors] = started
    if len(results.tasks) <= 3:
        assert placed["in_driver"] is True and placed["generation_in_driver"] is True
        assert (len(actors.refiners), len(actors.evaluators)) == (0, 0)
    else:
        assert placed["in_driver"] is False and placed["generation_in_driver"] is False
        assert (len(actors.refiners), len(actors.evaluators)) == (2, 2)
    usage = json.loads((config.run_dir / "usage.json").read_text())
    assert usage["optimizer"]["calls"] > 0 and usage["task_model"]["calls"] > 0  # the driver's calls are counted
