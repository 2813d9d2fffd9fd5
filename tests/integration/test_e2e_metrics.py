"""A task's own metric end to end, as a user runs it: `gpo-ray optimize CONFIG` on the shared local Ray cluster against
the fake endpoint, scored by a Python function and by checks. results.json's scores are the metric applied by hand to
the same replies; the metric's feedback reaches the feedback request; a function that cannot be imported stops the
run before any call with one line; a metric that raises is counted and, past the threshold, stops the run with one
line, and a resume after the fix finishes it."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from gpo_ray.cli import main
from gpo_ray.tasks.types import Example
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples
from tests.by_hand import replies_by_hand, task_of, verdict_by_hand

pytestmark = pytest.mark.usefixtures("ray_cluster")

CHECKS = {"kind": "checks", "checks": [{"check": "regex", "pattern": r"answer is \d+"},
                                       {"check": "similarity", "weight": 2}]}


def write_sums(folder, *, seed: int, flag_file=None) -> None:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    for split in ("train", "eval", "test", "format"):
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(8 if split != "format" else 2):
                a, b = rng.randint(2, 60), rng.randint(2, 60)
                record = {"input": f"What is {a} + {b}?", "target": str(a + b)}
                f.write(json.dumps(record | ({"flag_file": str(flag_file)} if flag_file else {})) + "\n")


def write_config(tmp_path, base_url: str, sources: list[dict], **settings) -> str:
    optimizer = {"epochs": 1, "batch_size": 4, "candidates": 2, "initial_prompt": "Answer the question.", "seed": 7,
                 "schedule": {"initial": 12, "final": 4}} | settings.pop("optimizer", {})
    config = {
        "tasks": [s["name"] for s in sources],
        "task_sources": [{"format": "jsonl", **s} for s in sources],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10},
        "optimizer": optimizer,
        "cluster": {"num_refiners": 1, "num_evaluators": 2, "evaluator_max_in_flight": 4},
        "run_dir": str(tmp_path / "run"),
        **settings,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def fake_for(tmp_path, **extra) -> FakeLLMConfig:
    examples = []
    for folder in (tmp_path / "data").iterdir():
        for split in ("train", "eval", "test"):
            for line in (folder / f"{split}.jsonl").read_text().splitlines():
                examples.append(json.loads(line))
    key = answer_key_from_examples([Example(r["input"], (r["target"],)) for r in examples])
    return FakeLLMConfig(base_accuracy=0.5, answer_key=key, skill_phrases={"step by step": 0.3},
                         optimizer_phrases=["Think step by step.", "Work carefully.", "Be concise."], **extra)


def scored_by_hand(config_path: str, base_url: str, task_name: str, prompt: str) -> float:
    """The prompt's eval score: the same requests sent again, their replies scored by the metric directly."""
    task = task_of(config_path, task_name)
    replies = replies_by_hand(config_path, base_url, prompt, list(task.eval))
    scores = [verdict_by_hand(task, ex, reply).score for ex, reply in zip(task.eval, replies, strict=True)]
    return sum(scores) / len(scores)


def test_python_and_checks_metrics_score_the_run_and_their_feedback_reaches_the_optimizer(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    write_sums(tmp_path / "data" / "b", seed=2)
    sources = [{"name": "sums/a", "path": str(tmp_path / "data" / "a"),
                "metric": {"kind": "python", "function": "tests.metric_functions:exact_number"}},
               {"name": "sums/b", "path": str(tmp_path / "data" / "b"), "metric": CHECKS}]
    with ThreadedFake(fake_for(tmp_path, record_requests=True)) as fake:
        config_path = write_config(tmp_path, fake.base_url, sources, optimizer={"direction": "feedback"})
        assert main(["optimize", config_path, "--quiet"]) == 0
        log = fake.requests_log()
        doc = json.loads((tmp_path / "run" / "results.json").read_text())
        for name in ("sums/a", "sums/b"):
            entry = doc["tasks"][name]
            assert entry["initial_eval_score"] == pytest.approx(
                scored_by_hand(config_path, fake.base_url, name, entry["initial_prompt"]))
            assert entry["best_eval_score"] == pytest.approx(
                scored_by_hand(config_path, fake.base_url, name, entry["best_prompt"]))
    assert 0 < doc["tasks"]["sums/a"]["initial_eval_score"] < 1
    assert 0 < doc["tasks"]["sums/b"]["initial_eval_score"] < 1
    # The recorded feedback requests show the metrics' own words beside the wrong examples.
    feedback = [r["text"] for r in log if r["role"] == "feedback"]
    assert any("What the metric found: the last word should be the sum " in t for t in feedback)
    assert any("What the metric found: reply is " in t and "% similar to the reference" in t for t in feedback)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())["config"]["task_sources"][0]["metric"]
    assert saved["function"] == "tests.metric_functions:exact_number" and len(saved["source_hash"]) == 16


def test_a_metric_that_cannot_be_imported_stops_before_any_call_with_one_line(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    sources = [{"name": "sums/a", "path": str(tmp_path / "data" / "a"),
                "metric": {"kind": "python", "function": "my_metrics.scoring:score"}}]
    with ThreadedFake(fake_for(tmp_path)) as fake:
        assert main(["optimize", write_config(tmp_path, fake.base_url, sources), "--quiet"]) == 2
        assert fake.stats()["requests"] == 0
    err = capsys.readouterr().err
    assert err == ("gpo-ray: error: metric function 'my_metrics.scoring:score' of task 'sums/a' cannot be imported: "
                   "ModuleNotFoundError: No module named 'my_metrics'\n")
    assert not (tmp_path / "run").exists()


def test_metric_errors_are_counted_then_stop_the_run_and_resume_finishes_after_the_fix(tmp_path, capsys):
    flag = tmp_path / "broken.txt"
    write_sums(tmp_path / "data" / "a", seed=1, flag_file=flag)
    sources = [{"name": "sums/a", "path": str(tmp_path / "data" / "a"),
                "metric": {"kind": "python", "function": "tests.metric_functions:fails_when_flagged"}}]
    # eval:0 cannot be scored (counted in each step that scores the eval split), and neither can three test examples:
    # the third metric error, met when the best prompt is scored on the test split, stops the run.
    flag.write_text("eval:0\ntest:0\ntest:1\ntest:2\n")
    with ThreadedFake(fake_for(tmp_path)) as fake:
        config_path = write_config(tmp_path, fake.base_url, sources, budget={"max_metric_errors": 4})
        assert main(["optimize", config_path, "--quiet"]) == 1
        err = capsys.readouterr().err
        doc = json.loads((tmp_path / "run" / "results.json").read_text())
        entry = doc["tasks"]["sums/a"]
        assert doc["status"] == "stopped" and len(entry["steps"]) == 2  # every step done, kept
        (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
        steps = [json.loads(line) for line in checkpoint.read_text().splitlines()]
        assert [s["counts"].get("metric_error") for s in steps] == [1, 1, 1]  # step 0 and the two steps' eval
        assert err.count("\n") == 1 and err.startswith(
            "gpo-ray: error: metric tests.metric_functions:fails_when_flagged of task sums/a failed on 5 examples "
            "(more than budget.max_metric_errors 4), the last on example test:")
        assert ": ValueError: cannot read the reply to test:" in err
        assert f"`gpo-ray resume {tmp_path / 'run'}` continues" in err
        flag.unlink()  # the fix: the data the metric reads
        assert main(["resume", str(tmp_path / "run"), "--quiet"]) == 0
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["status"] == "completed" and len(again["tasks"]["sums/a"]["steps"]) == 2
    assert again["tasks"]["sums/a"]["best_test_score"] is not None


def test_a_metric_file_beside_the_config_is_shipped_to_the_evaluators(tmp_path):
    """The file is on no worker's path (tmp_path is not on PYTHONPATH): the evaluators import the copy Ray's runtime_env
    (py_modules) unpacked for them, and the metric says where it ran in its feedback."""
    write_sums(tmp_path / "data" / "a", seed=1)
    (tmp_path / "ticket_metric.py").write_text(
        "def score(example, reply):\n"
        "    right = reply.rstrip('.').split()[-1] == example['answer']\n"
        "    return (1.0, None) if right else (0.0, 'scored in ' + __file__)\n")
    sources = [{"name": "sums/a", "path": "data/a", "metric": {"kind": "python", "function": "ticket_metric.py:score"}}]
    with ThreadedFake(fake_for(tmp_path, record_requests=True)) as fake:
        config_path = write_config(tmp_path, fake.base_url, sources, optimizer={"direction": "feedback"})
        assert main(["optimize", config_path, "--quiet"]) == 0
        log = fake.requests_log()
    shown = {line.split("What the metric found: scored in ")[1].split("\n")[0]
             for r in log if r["role"] == "feedback" for line in [r["text"]] if "scored in " in line}
    assert shown, "some example was wrong and its feedback reached the optimizer"
    assert all(p.endswith("/ticket_metric.py") and p != str(tmp_path / "ticket_metric.py") for p in shown), shown
    assert all("runtime_resources" in p for p in shown), shown


def test_a_metric_only_the_driver_can_import_stops_the_run_with_one_line(tmp_path, capsys, monkeypatch):
    """Importable where the run starts (on the driver's path), not on the evaluators' nodes: the first scoring stops
    the run with one line naming the function, its run directory kept for a resume once the module is installed."""
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "driver_only_metric.py").write_text("def score(example, reply):\n    return 1.0\n")
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))  # the shared cluster's workers started without it
    write_sums(tmp_path / "data" / "a", seed=1)
    sources = [{"name": "sums/a", "path": str(tmp_path / "data" / "a"),
                "metric": {"kind": "python", "function": "driver_only_metric:score"}}]
    with ThreadedFake(fake_for(tmp_path)) as fake:
        assert main(["optimize", write_config(tmp_path, fake.base_url, sources), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == ("gpo-ray: error: on an evaluator: metric function 'driver_only_metric:score' cannot be imported: "
                   "ModuleNotFoundError: No module named 'driver_only_metric'; completed steps are saved, "
                   f"`gpo-ray resume {tmp_path / 'run'}` continues\n")
    assert json.loads((tmp_path / "run" / "results.json").read_text())["status"] == "stopped"
