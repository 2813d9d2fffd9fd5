"""What is sent is what was meant (issue 23): a user who names their endpoint and models, and no sampling setting,
gets each role's own sampling in the requests the endpoint receives: the optimizer at temperature 1.0, the task
model at 0.0, both capped at 256 tokens (the paper preset: the optimizer at 512). Each path users take: CLI flags,
YAML role blocks, the Python API with LLMRoleConfig objects, the paper preset, a sweep. The two roles name different
models, so the recording endpoint tells their requests apart by what was sent, not by guessing from the prose."""

from __future__ import annotations

import json
from collections import Counter

import pytest

import gpo_ray
from gpo_ray.cli import main
from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.grid import grid_from_dict
from gpo_ray.sweep import sweep
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.second_turn import SECOND_TURN_MAX_TOKENS
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples

pytestmark = pytest.mark.usefixtures("ray_cluster")

TASK_MODEL, OPTIMIZER_MODEL = "task-llm", "optimizer-llm"
SMALL = {"epochs": 1, "batch_size": 4, "candidates": 2, "initial_prompt": "Answer the question."}


@pytest.fixture
def endpoint():
    (task,) = resolve_tasks(["example/arithmetic"], data_dir=None)
    key = answer_key_from_examples([*task.train, *task.eval, *task.test])
    with ThreadedFake(FakeLLMConfig(answer_key=key, base_accuracy=0.4, record_requests=True,
                                    optimizer_phrases=["Think step by step.", "Work carefully."])) as fake:
        yield fake


def sent(fake: ThreadedFake) -> dict[str, Counter]:
    """(temperature, max_tokens) of every request the endpoint received, per model named in it."""
    out: dict[str, Counter] = {}
    for r in fake.requests_log():
        out.setdefault(r["model"], Counter())[(r["temperature"], r["max_tokens"])] += 1
    return out


def assert_sent(fake: ThreadedFake, *, optimizer: tuple, task: set = frozenset({(0.0, 256)})) -> None:
    by_model = sent(fake)
    assert set(by_model) == {TASK_MODEL, OPTIMIZER_MODEL}, by_model
    assert set(by_model[OPTIMIZER_MODEL]) == {optimizer}, by_model[OPTIMIZER_MODEL]
    assert set(by_model[TASK_MODEL]) == set(task), by_model[TASK_MODEL]


def recorded_sampling(run_dir) -> dict:
    return json.loads((run_dir / "results.json").read_text())["sampling"]


def test_cli_flags_naming_only_the_endpoint_and_models(endpoint, tmp_path, capsys):
    code = main(["optimize", "--task", "example/arithmetic", "--base-url", endpoint.base_url,
                 "--model", TASK_MODEL, "--optimizer-model", OPTIMIZER_MODEL, "--epochs", "1", "--batch-size", "4",
                 "--candidates", "2", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert_sent(endpoint, optimizer=(1.0, 256))
    assert recorded_sampling(tmp_path / "run") == {
        "task_model": {"model": TASK_MODEL, "temperature": 0.0, "max_tokens": 256},
        "optimizer_model": {"model": OPTIMIZER_MODEL, "temperature": 1.0, "max_tokens": 256}}


def test_yaml_role_blocks_naming_only_the_endpoint(endpoint, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("tasks: [example/arithmetic]\n"
                   f"task_model: {{base_url: '{endpoint.base_url}', model: {TASK_MODEL}}}\n"
                   f"optimizer_model:\n  endpoints: [{{base_url: '{endpoint.base_url}'}}]\n  model: {OPTIMIZER_MODEL}\n"
                   f"optimizer: {json.dumps(SMALL)}\n"
                   f"run_dir: {tmp_path / 'run'}\n")
    assert main(["optimize", str(cfg), "--quiet"]) == 0, capsys.readouterr().err
    assert_sent(endpoint, optimizer=(1.0, 256))
    # `plan` says beforehand what the run then sent
    capsys.readouterr()
    assert main(["plan", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["sampling"] == recorded_sampling(tmp_path / "run")


def test_python_api_with_role_objects(endpoint, tmp_path):
    config = RunConfig(tasks=["example/arithmetic"],
                       task_model=LLMRoleConfig(base_url=endpoint.base_url, model=TASK_MODEL),
                       optimizer_model=LLMRoleConfig(base_url=endpoint.base_url, model=OPTIMIZER_MODEL, timeout_s=30),
                       optimizer=SMALL, run_dir=tmp_path / "run")
    gpo_ray.optimize(config)
    assert_sent(endpoint, optimizer=(1.0, 256))


def test_paper_preset_with_the_users_endpoint(endpoint, tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text("preset: paper\ntasks: [example/arithmetic]\n"
                   f"task_model: {{base_url: '{endpoint.base_url}', model: {TASK_MODEL}}}\n"
                   f"optimizer_model: {{base_url: '{endpoint.base_url}', model: {OPTIMIZER_MODEL}}}\n"
                   "optimizer: {epochs: 1, batch_size: 8, candidates: 2}\n"
                   f"run_dir: {tmp_path / 'run'}\n")
    assert main(["optimize", str(cfg), "--quiet"]) == 0, capsys.readouterr().err
    # The official optimize.py: the optimizer at 1.0 with 512 decode steps, the scorer greedy with 256; its second
    # turns (answer_extraction: second_turn) at their own cap.
    assert_sent(endpoint, optimizer=(1.0, 512), task={(0.0, 256), (0.0, SECOND_TURN_MAX_TOKENS)})


def test_a_sweep_keeps_each_variants_sampling(endpoint, tmp_path):
    grid = grid_from_dict({
        "base": {"tasks": ["example/arithmetic"],
                 "task_model": {"base_url": endpoint.base_url, "model": TASK_MODEL},
                 "optimizer_model": {"base_url": endpoint.base_url, "model": OPTIMIZER_MODEL},
                 "optimizer": SMALL},
        "variants": {"as_is": {}, "cooler": {"optimizer_model": {"temperature": 0.5}}},
    }, folder=tmp_path)
    sweep(grid, sweep_dir=tmp_path / "sweep")
    by_model = sent(endpoint)
    assert set(by_model[OPTIMIZER_MODEL]) == {(1.0, 256), (0.5, 256)}, by_model
    assert set(by_model[TASK_MODEL]) == {(0.0, 256)}, by_model
    temps = {json.loads(p.read_text())["sampling"]["optimizer_model"]["temperature"]
             for p in (tmp_path / "sweep").rglob("results.json") if "sampling" in json.loads(p.read_text())}
    assert temps == {1.0, 0.5}
