"""benchmarks.defaults: the hand-tuned run it compares the defaults with is what it says (2 refiners, 2 evaluators,
32 calls in flight per actor, fixed), for the shared BBH task and for the synthetic one."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.defaults import hand_tuned_config
from gpo_ray.config import RunConfig, load_config
from gpo_ray.llm.concurrency import in_flight_share


def check_hand_tuned(config: RunConfig) -> None:
    assert (config.cluster.num_refiners, config.cluster.num_evaluators) == (2, 2)
    for role in (config.task_model, config.optimizer_model):
        assert not role.adaptive_concurrency.enabled
        assert in_flight_share(role.in_flight_cap, callers=2) == 32


def test_for_a_named_task(tmp_path: Path) -> None:
    args = hand_tuned_config(["--task", "bbh/navigate", "--data-dir", "/data"], tmp_path)
    assert args[1:] == ["--data-dir", "/data"]
    config = load_config(Path(args[0]), overrides={"task_model": {"base_url": "http://e/v1"},
                                                   "optimizer_model": {"base_url": "http://e/v1"}})
    assert config.tasks == ["bbh/navigate"]
    check_hand_tuned(config)


def test_for_the_synthetic_task_its_sources_are_kept(tmp_path: Path) -> None:
    task_file = tmp_path / "task.yaml"
    source = {"name": "bbh_shaped/t00", "format": "jsonl", "path": str(tmp_path), "metric": "numeric"}
    task_file.write_text(json.dumps({"tasks": ["bbh_shaped/t00"], "task_sources": [source]}))
    (args_path,) = hand_tuned_config([str(task_file)], tmp_path)
    config = load_config(Path(args_path), overrides={"task_model": {"base_url": "http://e/v1"},
                                                     "optimizer_model": {"base_url": "http://e/v1"}})
    assert config.tasks == ["bbh_shaped/t00"] and config.task_sources[0].name == "bbh_shaped/t00"
    check_hand_tuned(config)
