"""The trajectory memory in several shards (one actor and one store each): a driver killed with SIGKILL after a
completed step, then `resume`, finds every task's memory in the shard where it was, and ends as an undisturbed
sharded run. (A shard's actor killed mid-run: tests/faults/test_actor_faults.py.)"""

from __future__ import annotations

import hashlib
import json

import pytest

from gpo_ray.actors.memory import wait_until_gone
from gpo_ray.actors.memory_shards import shard_actor_name
from gpo_ray.api import optimize, resume
from gpo_ray.memory.sharding import shard_of
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.testing import ThreadedFake
from tests.faults.harness import memory_contents
from tests.integration.test_e2e_optimize import fake_config, make_config
from tests.integration.test_resume import sigkill_driver_after

pytestmark = pytest.mark.usefixtures("ray_cluster")

SHARDS = 3


def sharded(config):
    return config.model_copy(update={"cluster": config.cluster.model_copy(update={"memory_shards": SHARDS})})


def checkpointed_steps(run_dir, task: str) -> list[int]:
    path = run_dir / "checkpoints" / task_file_name(task)
    return [json.loads(x)["step"] for x in path.read_text().splitlines()] if path.exists() else []


def test_sharded_memory_is_found_where_it_was_after_a_driver_kill_and_resume(tmp_path):
    base = make_config(tmp_path / "cfg", "http://placeholder/v1")
    fake_cfg = fake_config(base).model_copy(update={"latency_s": 0.05})
    with ThreadedFake(fake_cfg) as fake:
        undisturbed = optimize(sharded(make_config(tmp_path / "a", fake.base_url)))
    undisturbed_memory = memory_contents(tmp_path / "a" / "run" / "chroma")
    assert len({shard_of(t, SHARDS) for t in undisturbed.tasks}) >= 2, "the tasks are spread over shards"

    with ThreadedFake(fake_cfg) as fake:
        config = sharded(make_config(tmp_path / "b", fake.base_url))
        sigkill_driver_after(config, tmp_path / "run.yaml", lines=3, what="two completed steps")
        # The killed driver's shard actors go with it; then its stores can be read here.
        run_id = hashlib.sha256(str(config.run_dir.resolve()).encode()).hexdigest()[:16]
        for k in range(SHARDS):
            wait_until_gone(shard_actor_name(run_id, k, SHARDS))
        at_kill = memory_contents(config.run_dir / "chroma")  # fails if a task is outside its hashed shard
        for task in undisturbed.tasks:
            done = checkpointed_steps(config.run_dir, task)
            in_memory = [e.step for e in at_kill.get(task, {}).get("trajectory", [])]
            # A step is checkpointed first, then stored, and its write is not awaited by the next step (and the
            # memory actors may not exist yet: the warm start's first steps): the memory holds a prefix of the
            # checkpointed steps, never a step that was not checkpointed. The resume re-adds the rest.
            assert in_memory == done[:len(in_memory)], (task, done, in_memory)
        assert any(len(checkpointed_steps(config.run_dir, t)) < len(r.steps) + 1 for t, r in undisturbed.tasks.items())

        resumed = resume(config.run_dir)

    assert resumed.tasks == undisturbed.tasks
    assert json.loads((config.run_dir / "memory.json").read_text())["shards"] == SHARDS
    # Every task's whole memory in its own shard, as in the undisturbed run: the resume used the run's shards.
    assert memory_contents(config.run_dir / "chroma") == undisturbed_memory
