"""The run directory: per-step checkpoints, torn tails, corrupted or foreign checkpoints refused."""

import json

import pytest

from gpo_ray.config import RunConfig
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import ScoredCandidate
from gpo_ray.errors import InputError
from gpo_ray.runtime.run_dir import RunDirectory, task_file_name


def _config(tmp_path, **opt):
    return RunConfig(tasks=["example/arithmetic"], run_dir=tmp_path / "run", optimizer=opt)


def _steps(n):
    return [
        StepResult(step=i, edit_budget=10 - i, prompt=f"prompt {i}", eval_score=i / 10,
                   candidates=(ScoredCandidate(f"cand {i}", 0.5, 2),) if i else ())
        for i in range(n)
    ]


def test_steps_round_trip_and_config_is_restored(tmp_path):
    cfg = _config(tmp_path)
    rd = RunDirectory(cfg.run_dir)
    rd.create(cfg)
    for s in _steps(3):
        rd.append_step("example/arithmetic", s, fingerprint=cfg.fingerprint())
    assert rd.completed_steps("example/arithmetic", fingerprint=cfg.fingerprint()) == _steps(3)
    assert rd.load_config() == cfg
    assert json.loads(rd.config_file.read_text())["config"]["tasks"] == ["example/arithmetic"]


def test_create_refuses_an_existing_run(tmp_path):
    cfg = _config(tmp_path)
    RunDirectory(cfg.run_dir).create(cfg)
    with pytest.raises(InputError, match="resume"):
        RunDirectory(cfg.run_dir).create(cfg)


def test_a_torn_last_line_is_dropped_but_damage_in_the_middle_is_refused(tmp_path):
    cfg = _config(tmp_path)
    rd = RunDirectory(cfg.run_dir)
    rd.create(cfg)
    for s in _steps(2):
        rd.append_step("t", s, fingerprint=cfg.fingerprint())
    path = rd.checkpoints / task_file_name("t")
    with open(path, "a") as f:
        f.write('{"v": 1, "fp": "')  # killed mid-write
    assert [s.step for s in rd.completed_steps("t", fingerprint=cfg.fingerprint())] == [0, 1]

    lines = path.read_text().split("\n")
    lines[0] = lines[0][:20]
    path.write_text("\n".join(lines[:2]) + "\n")
    with pytest.raises(InputError, match=r":1: corrupted checkpoint"):
        rd.completed_steps("t", fingerprint=cfg.fingerprint())


def test_checkpoints_of_another_config_are_refused(tmp_path):
    cfg = _config(tmp_path)
    rd = RunDirectory(cfg.run_dir)
    rd.create(cfg)
    rd.append_step("t", _steps(1)[0], fingerprint=cfg.fingerprint())
    other = _config(tmp_path, epochs=5)
    with pytest.raises(InputError, match="different config"):
        rd.completed_steps("t", fingerprint=other.fingerprint())


def test_an_edited_config_file_is_refused(tmp_path):
    cfg = _config(tmp_path)
    rd = RunDirectory(cfg.run_dir)
    rd.create(cfg)
    data = json.loads(rd.config_file.read_text())
    data["config"]["optimizer"]["epochs"] = 9
    rd.config_file.write_text(json.dumps(data))
    with pytest.raises(InputError, match="fingerprint"):
        rd.load_config()
