"""The gpo-ray command as a user runs it: plan output, one-line errors with exit code 2, no traceback."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from gpo_ray.cli import main
from gpo_ray.config import DEFAULT_IN_FLIGHT


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gpo_ray", *args], capture_output=True, text=True, timeout=120)


def test_plan_json_gives_steps_and_the_cosine_budget(capsys):
    assert main(["plan", "--task", "example/arithmetic", "--epochs", "3", "--batch-size", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    plan = doc["tasks"]["example/arithmetic"]
    assert plan["steps"] == 6  # 8 training examples, batch 4, 3 epochs
    T = 6
    assert plan["edit_budget"] == [int(10 + 40 * 0.5 * (1 + math.cos(math.pi * t / T))) for t in range(1, T + 1)]
    assert plan["optimizer_calls"] == 6 * 8
    assert plan["task_model_calls"] == 8 + 6 * (8 * 4 + 8) + 2 * 8
    assert doc["total"]["task_model_calls"] == plan["task_model_calls"]


def test_plan_on_the_paper_benchmarks(shared_data_dir, capsys):
    assert main(["plan", "--task", "bbh/*", "--task", "gsm8k", "--data-dir", str(shared_data_dir), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["tasks"]
    assert len(doc) == 28
    assert doc["bbh/navigate"]["steps"] == 18 and len(doc["bbh/navigate"]["edit_budget"]) == 18
    assert doc["bbh/snarks"]["steps"] == 12  # 33 train: 4 batches of 8 (remainder 1 < 4) x 3 epochs
    assert doc["gsm8k"]["steps"] == 39  # 100 train: 12 batches + 1 for the remainder of 4 x 3 epochs


def test_plan_table_names_each_task(capsys):
    assert main(["plan", "--task", "example/arithmetic"]) == 0
    out = capsys.readouterr().out
    assert "example/" in out
    assert "total: 24 optimizer calls, 240 task-model calls" in " ".join(out.split())


def test_plan_shows_the_cap_and_start_of_the_calls_in_flight_per_endpoint(capsys):
    """The one knob and what the adaptive limit starts at (the report shows where it settled)."""
    assert main(["plan", "--task", "example/arithmetic", "--base-url", "http://e:1/v1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)["concurrency"]
    assert doc["task_model"] == {"max_in_flight": DEFAULT_IN_FLIGHT, "set": False, "adaptive": True, "start": 4}
    assert main(["plan", "--task", "example/arithmetic", "--base-url", "http://e:1/v1", "--max-in-flight", "3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "task_model at most 3, adaptive, starting at 3 per actor" in out
    assert "optimizer_model at most 3" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--task", "example/arithmetic", "--epochs", "0"], "optimizer.epochs"),
        (["plan", "--task", "no/such-task"], "unknown task"),
        (["plan", "--task", "bbh/navigate"], "data"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(args, message):
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr


def test_a_broken_config_file_is_named(tmp_path):
    bad = tmp_path / "run.yaml"
    bad.write_text("tasks: [example/arithmetic\noptimizer: {epochs: 2")
    proc = run_cli("plan", str(bad))
    assert proc.returncode == 2 and str(bad) in proc.stderr and "Traceback" not in proc.stderr
    unknown = tmp_path / "run.toml"
    unknown.write_text('tasks = ["example/arithmetic"]\n[optimizer]\nepoch = 3\n')
    proc = run_cli("plan", str(unknown))
    assert proc.returncode == 2 and "optimizer.epoch: unknown setting" in proc.stderr


def test_config_file_values_are_overridden_by_flags(tmp_path, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text('tasks = ["example/arithmetic"]\n[optimizer]\nepochs = 1\nbatch_size = 4\n')
    assert main(["plan", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["example/arithmetic"]["steps"] == 2
    assert main(["plan", str(cfg), "--epochs", "2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"]["example/arithmetic"]["steps"] == 4


def test_unknown_flag_is_an_argparse_error_with_exit_2():
    proc = run_cli("optimize", "--no-such-flag")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["check", "--task", "example/arithmetic", "--examples", "0"], "gpo-ray: error: --examples 0: at least 1\n"),
        (["check", "--task", "no/such-task"], "unknown task"),
    ],
)
def test_check_bad_input_is_one_line_and_exit_2_before_any_call(argv, line, capsys):
    assert main([*argv, "--base-url", "http://127.0.0.1:9/v1", "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert line in err and err.count("\n") == 1


def test_check_of_a_sweeps_grid_says_so_in_one_line(tmp_path, capsys):
    grid = tmp_path / "grid.yaml"
    grid.write_text("base: {tasks: [example/arithmetic]}\nvariants: {a: {}, b: {optimizer: {epochs: 2}}}\n")
    assert main(["check", str(grid)]) == 2
    assert capsys.readouterr().err == (f"gpo-ray: error: {grid} is a sweep's grid: `gpo-ray check` takes a run config "
                                       "(or --task); `gpo-ray plan GRID` shows what the grid costs\n")
