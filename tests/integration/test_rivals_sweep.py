"""examples/rivals.yaml (every optimizer x the paper's lite BBH, its four tasks, x two seeds) as one sweep against the
fake endpoint, on the shared local Ray cluster, with the paper's BBH data (skipped without it) cut to a few examples a
split:

- the report opens with the comparison table (methods as rows; the bbh-lite column, the mean of the four tasks, with
  the paper's Table 7 figure beside it, then the tasks as columns without one; the note naming the paper's pair and
  table and the model pair that produced ours), then each method's cost and the efficiency plot (HTML);
- a sweep driver SIGKILLed mid-way and resumed (`gpo-ray resume SWEEP_DIR`) ends with the same comparison table and
  every sub-run's results equal to the uninterrupted sweep's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import ray

from gpo_ray.config import read_config_file
from gpo_ray.grid import grid_from_dict
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.sweep import plan_grid, resume_sweep, sweep
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples
from tests.driver_kill import sigkill_when

pytestmark = pytest.mark.usefixtures("ray_cluster")

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "rivals.yaml"


def env() -> dict[str, str]:
    """The subprocesses' environment, read when they start (the cluster fixture sets its token in it)."""
    return {**os.environ, "PYTHONPATH": os.getcwd()}


def rivals_grid(data_dir: Path, base_url: str) -> dict:
    """The example's grid on `base_url` and `data_dir`, each split cut to a few examples (two steps a task)."""
    grid = read_config_file(EXAMPLE)
    base = grid["base"]
    base["data_dir"] = str(data_dir)
    for role in ("task_model", "optimizer_model"):
        base[role] = {**base[role], "base_url": base_url, "timeout_s": 10}
    base["optimizer"] |= {"batch_size": 4, "train_limit": 8, "eval_limit": 4, "test_limit": 4}
    return grid


def fake_settings(data_dir: Path) -> FakeLLMConfig:
    base = read_config_file(EXAMPLE)["base"]
    tasks = resolve_tasks(base["tasks"], data_dir=data_dir)
    key = answer_key_from_examples([e for t in tasks for e in (*t.train, *t.eval, *t.test)])
    return FakeLLMConfig(answer_key=key, base_accuracy=0.3, skill_phrases={"carefully": 0.3},
                         optimizer_phrases=[f"Read carefully, part {i}." for i in range(300)], latency_s=0.01)


def report(sweep_dir: Path, fmt: str) -> str:
    done = subprocess.run([sys.executable, "-m", "gpo_ray", "report", str(sweep_dir), "--format", fmt, "--output", "-"],
                          capture_output=True, text=True, env=env())
    assert done.returncode == 0, done.stderr
    return done.stdout


def comparison_table(markdown: str) -> str:
    return markdown.split("## Comparison")[1].split("## Cost per method")[0]


def checkpoint_steps(run_dir: Path, task: str) -> list[int]:
    path = run_dir / "checkpoints" / task_file_name(task)
    return [json.loads(line)["step"] for line in path.read_text().splitlines()] if path.exists() else []


def test_the_rivals_sweep_reports_the_comparison_and_resumes_to_the_same_table(shared_data_dir, tmp_path):
    with ThreadedFake(fake_settings(shared_data_dir)) as fake:
        grid = grid_from_dict(rivals_grid(shared_data_dir, fake.base_url), folder=EXAMPLE.parent)
        results = sweep(grid, sweep_dir=tmp_path / "sweep")
    assert results.status == "completed" and len(results.runs) == 10
    # Each sub-run asked the optimizer for what `plan` counted for its method, and the task model for at most what it
    # counted (a bound here: a duplicate candidate is not scored, a best prompt that is the initial one is scored on
    # the test split once; tests/integration/test_e2e_rival_methods.py has the exact case).
    plan = {v.variant: v for v in plan_grid(grid).variants}
    for name, run in results.runs.items():
        planned = plan[results.variants[name]]
        assert run.usage["optimizer"]["calls"] == sum(p.optimizer_calls for p in planned.tasks), name
        assert 0 < run.usage["task_model"]["calls"] <= sum(p.task_model_calls for p in planned.tasks), name
    markdown = report(tmp_path / "sweep", "md")
    # The comparison table comes first: methods as rows; the lite BBH's column with the paper's figure beside it, then
    # the tasks' columns (no paper column: the paper reports no single task).
    assert markdown.index("## Comparison") < markdown.index("## Cost per method") < markdown.index("## Ablation")
    table = comparison_table(markdown)
    header = table.strip().splitlines()[0]
    assert header.startswith("| method | bbh-lite | bbh-lite: paper | ")
    for task in ("bbh/movie\\_recommendation", "bbh/navigate", "bbh/object\\_counting", "bbh/word\\_sorting"):
        assert f"| {task} |" in header and f"{task}: paper" not in header
    rows = [line for line in table.strip().splitlines()[2:] if line.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[:5]] == ["gpo", "ape", "apo", "opro", "pe2"]
    assert all(" ± " in r for r in rows[:5]), "each cell a mean ± spread over the two seeds"
    # The paper's Table 7, lite BBH, prompt optimizer GPT-3.5-turbo / task model Llama-2-7b-chat (its default pair:
    # the fake's models are none of its pairs): GPO 43.75, APE 42.01, APO 40.34, OPRO 42.14, PE2 42.01 (percent).
    assert [r.split("|")[3].strip() for r in rows[:5]] == ["0.4375", "0.4201", "0.4034", "0.4214", "0.4201"]
    assert "task model / optimizer fake-llm / fake-llm" in table
    assert ("paper: bbh-lite: arXiv 2402.17564v3 Table 7, task model / optimizer Llama-2-7b-chat / GPT-3.5-turbo "
            "(the paper's default pair: ours is none of its pairs there)") in table
    cost = markdown.split("## Cost per method")[1].split("##")[0]
    assert "optimizer tokens / run" in cost and "wall s / run" in cost
    html = report(tmp_path / "sweep", "html")
    assert html.index('id="comparison"') < html.index('id="score-vs-tokens"') < html.index('id="ablation"')
    assert 'alt="each method&#x27;s mean best test score' in html and "data:image/png;base64," in html

    # Killed mid-way and resumed: the same table.
    with ThreadedFake(fake_settings(shared_data_dir)) as fake:
        grid_file = tmp_path / "grid.yaml"
        grid_file.write_text(json.dumps(rivals_grid(shared_data_dir, fake.base_url)))
        sweep_dir = tmp_path / "killed"
        runs_dir = sweep_dir / "runs"
        tasks = grid.base["tasks"]
        total = sum(len(r.steps) + 1 for run in results.runs.values() for r in run.tasks.values())

        def lines() -> int:
            return sum(len(checkpoint_steps(d, t)) for d in runs_dir.glob("*") for t in tasks) if runs_dir.is_dir() else 0

        driver = subprocess.Popen(
            [sys.executable, "-m", "gpo_ray", "sweep", str(grid_file), "--run-dir", str(sweep_dir), "--quiet",
             "--address", ray.get_runtime_context().gcs_address], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=env())
        sigkill_when(driver, lambda: lines() >= total // 3)
        assert 0 < lines() < total, "the kill happened mid-sweep"
        resumed_run = subprocess.run([sys.executable, "-m", "gpo_ray", "resume", str(sweep_dir), "--quiet",
                                      "--address", ray.get_runtime_context().gcs_address], capture_output=True, env=env())
        assert resumed_run.returncode == 0, resumed_run.stderr.decode()[-2000:]
    resumed = resume_sweep(sweep_dir)  # finished: the same results, no new work
    for name, run in results.runs.items():
        assert resumed.runs[name].tasks == run.tasks, name
        for task, r in run.tasks.items():
            assert checkpoint_steps(runs_dir / name, task) == list(range(len(r.steps) + 1)), "each step once"
    assert comparison_table(report(sweep_dir, "md")) == table
