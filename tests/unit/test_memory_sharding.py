"""Which shard holds a task's memory, and the layout a run keeps for its whole life (gpo_ray/memory/sharding.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gpo_ray.errors import InputError
from gpo_ray.memory.sharding import (
    LAYOUT_FILE,
    MemoryLayout,
    default_shards,
    load_or_create_layout,
    shard_of,
)


def test_a_task_has_the_same_shard_in_every_process() -> None:
    names = [f"bbh/task_{i}" for i in range(50)]
    here = [shard_of(n, 4) for n in names]
    # Another interpreter (another PYTHONHASHSEED): Python's hash() would differ, sha256 does not.
    code = ("import json,sys; from gpo_ray.memory.sharding import shard_of; "
            "print(json.dumps([shard_of(n, 4) for n in json.loads(sys.argv[1])]))")
    there = subprocess.run([sys.executable, "-c", code, json.dumps(names)], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", **__import__("os").environ}).stdout
    assert json.loads(there) == here
    assert set(here) == {0, 1, 2, 3}, "50 names spread over all 4 shards"
    assert all(shard_of(n, 1) == 0 for n in names)


def test_default_shards_grow_with_the_task_count_and_stop_at_four() -> None:
    assert [default_shards(n) for n in (1, 27, 500, 501, 1000, 1500, 10_000)] == [1, 1, 1, 2, 2, 3, 4]


def test_one_shard_keeps_the_layout_of_runs_made_before_sharding(tmp_path) -> None:
    one = MemoryLayout(shards=1, run_id="abc")
    assert one.collection(0) == "gpo-run-abc" and one.chroma_dir(tmp_path, 0) == tmp_path
    three = MemoryLayout(shards=3, run_id="abc")
    assert three.collection(2) == "gpo-run-abc-shard-2" and three.chroma_dir(tmp_path, 2) == tmp_path / "shard-2"


def test_a_run_keeps_the_shard_count_it_was_created_with(tmp_path) -> None:
    first = load_or_create_layout(tmp_path, run_id="r", wanted=3, tasks=2)
    assert first.shards == 3
    assert json.loads((tmp_path / LAYOUT_FILE).read_text())["shards"] == 3
    # A resume (or a config edited since) asking for another count still gets the run's own.
    assert load_or_create_layout(tmp_path, run_id="r", wanted=1, tasks=2).shards == 3
    assert load_or_create_layout(tmp_path, run_id="r", wanted=None, tasks=5000).shards == 3


def test_a_run_dir_from_before_sharding_is_one_shard(tmp_path) -> None:
    (tmp_path / "chroma").mkdir()  # its store, and no memory.json
    assert load_or_create_layout(tmp_path, run_id="r", wanted=4, tasks=2).shards == 1
    assert json.loads((tmp_path / LAYOUT_FILE).read_text())["shards"] == 1


def test_without_a_count_the_default_follows_the_tasks(tmp_path) -> None:
    assert load_or_create_layout(tmp_path, run_id="r", wanted=None, tasks=1000).shards == 2


@pytest.mark.parametrize("text", ["{", '{"shards": 0}', '{"shards": "x"}', "[]"])
def test_a_damaged_layout_is_a_clear_error(tmp_path, text) -> None:
    (tmp_path / LAYOUT_FILE).write_text(text)
    with pytest.raises(InputError, match="memory.json is damaged"):
        load_or_create_layout(tmp_path, run_id="r", wanted=None, tasks=1)
