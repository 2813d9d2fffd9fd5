"""`gpo-ray check` as a user runs it against the fake endpoint, no Ray: the initial prompt on the first examples of a
split, scored by a Python function and by checks. The printed replies, scores and feedback are the metric applied by
hand to the replies the endpoint gives; the cost is `plan`'s; a function that cannot be imported is optimize's line."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from gpo_ray.cli import main
from gpo_ray.config import load_config
from gpo_ray.core.plan import plan_task
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Example
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples
from tests.by_hand import replies_by_hand, task_of, verdict_by_hand

CHECKS = {"kind": "checks", "checks": [{"check": "regex", "pattern": r"answer is \d+"},
                                       {"check": "contains", "text": "answer"},
                                       {"check": "similarity", "weight": 2}]}


def write_sums(folder: Path, *, seed: int) -> list[Example]:
    rng = random.Random(seed)
    folder.mkdir(parents=True)
    examples = []
    for split in ("train", "eval", "test"):
        with open(folder / f"{split}.jsonl", "w") as f:
            for _ in range(8):
                a, b = rng.randint(2, 60), rng.randint(2, 60)
                f.write(json.dumps({"input": f"What is {a} + {b}?", "target": str(a + b)}) + "\n")
                examples.append(Example(f"What is {a} + {b}?", (str(a + b),)))
    return examples


def write_config(tmp_path: Path, base_url: str, metrics: dict[str, dict]) -> str:
    config = {
        "tasks": list(metrics),
        "task_sources": [{"name": name, "format": "jsonl", "path": f"data/{name.split('/')[1]}", "metric": metric}
                         for name, metric in metrics.items()],
        "task_model": {"base_url": base_url, "model": "fake-llm", "max_tokens": 64, "timeout_s": 10},
        "optimizer_model": {"base_url": base_url, "model": "fake-llm", "timeout_s": 10},
        "optimizer": {"epochs": 1, "batch_size": 4, "candidates": 2, "initial_prompt": "Answer the question."},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def by_hand(config_path: str, base_url: str, task_name: str, split: str, n: int) -> list[dict]:
    """The same requests sent again; their replies scored by the metric called directly."""
    task = task_of(config_path, task_name)
    examples = getattr(task, split)[:n]
    prompt = load_config(Path(config_path)).optimizer.initial_prompt
    out = []
    for ex, reply in zip(examples, replies_by_hand(config_path, base_url, prompt, examples), strict=True):
        verdict = verdict_by_hand(task, ex, reply)
        out.append({"id": ex.id, "reply": reply, "score": verdict.score, "feedback": verdict.feedback})
    return out


def test_check_prints_each_reply_score_and_feedback_as_the_metric_gives_them(tmp_path, capsys):
    examples = write_sums(tmp_path / "data" / "a", seed=1) + write_sums(tmp_path / "data" / "b", seed=2)
    metrics = {"sums/a": {"kind": "python", "function": "tests.metric_functions:exact_number"}, "sums/b": CHECKS}
    fake_config = FakeLLMConfig(base_accuracy=0.5, answer_key=answer_key_from_examples(examples))
    with ThreadedFake(fake_config) as fake:
        config_path = write_config(tmp_path, fake.base_url, metrics)
        capsys.readouterr()  # the fake's start line
        assert main(["check", config_path, "--examples", "6", "--json"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert fake.stats()["requests"] == 12  # 6 examples x 2 tasks, nothing else
        assert main(["check", config_path, "--examples", "3", "--split", "test"]) == 0
        text = capsys.readouterr().out
        expected = {name: by_hand(config_path, fake.base_url, name, "eval", 6) for name in metrics}
        expected_test = {name: by_hand(config_path, fake.base_url, name, "test", 3) for name in metrics}

    assert doc["usage"]["task_model"]["requests"] == 12
    assert doc["sampling"]["task_model"] == {"model": "fake-llm", "temperature": 0.0, "max_tokens": 64}
    config = load_config(Path(config_path))
    tasks = {t.name: t for t in resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)}
    for name in metrics:
        got = doc["tasks"][name]
        assert got["split"] == "eval" and got["prompt"] == "Answer the question."
        assert [{k: e[k] for k in ("id", "reply", "score", "feedback")} for e in got["examples"]] == expected[name]
        assert [e["input"] for e in got["examples"]] == [ex.input for ex in tasks[name].eval[:6]]
        assert all(e["metric_error"] is None for e in got["examples"])
        assert got["mean"] == sum(e["score"] for e in expected[name]) / 6
        assert got["plan"] == plan_task(tasks[name], config.optimizer, optimizer_max_tokens=256,
                                        task_max_tokens=64).to_dict()
    assert doc["tasks"]["sums/a"]["metric"] == "tests.metric_functions:exact_number"
    assert doc["tasks"]["sums/b"]["metric"] == "checks"
    # The fake answers some right, some wrong: different scores and the metrics' own feedback are there to see.
    for name in metrics:
        assert len({e["score"] for e in expected[name]}) > 1, expected[name]
    assert any((e["feedback"] or "").startswith("the last word should be the sum ") for e in expected["sums/a"])
    assert any("% similar to the reference" in (e["feedback"] or "") for e in expected["sums/b"])

    # The text: per example its id and score, the reply, the feedback; the mean, the run's cost, the sampling.
    for name, rows in expected_test.items():
        assert f"{name}: the initial prompt 'Answer the question.' on the first 3 test examples" in text
        for row in rows:
            assert f"  [{row['id']}] score {row['score']:.3f}\n" in text
            assert f"    reply:    {row['reply'].splitlines()[0]}" in text
            if row["feedback"]:
                assert f"    feedback: {row['feedback']}\n" in text
        assert f"  mean {sum(r['score'] for r in rows) / 3:.3f} over 3 examples" in text
    plan = plan_task(tasks["sums/a"], config.optimizer, optimizer_max_tokens=256, task_max_tokens=64)
    assert (f"  a full run: {plan.steps} steps, {plan.optimizer_calls:,} optimizer calls, "
            f"{plan.task_model_calls:,} task-model calls") in text
    assert "this check: 6 task-model requests\n" in text
    assert text.endswith("sampling: task_model fake-llm at temperature 0.0, max_tokens 64; optimizer_model fake-llm "
                         "at temperature 1.0, max_tokens 256\n")


def test_a_metric_error_is_shown_for_its_example_and_scores_0(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    metrics = {"sums/a": {"kind": "python", "function": "tests.metric_functions:out_of_range"}}
    with ThreadedFake(FakeLLMConfig()) as fake:
        assert main(["check", write_config(tmp_path, fake.base_url, metrics), "--examples", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("metric error: returned the score 1.5, outside [0, 1]") == 2
    assert "  mean 0.000 over 2 examples (2 metric errors, scored 0)" in out


def test_a_metric_that_cannot_be_imported_is_optimizes_one_line_before_any_call(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    metrics = {"sums/a": {"kind": "python", "function": "my_metrics.scoring:score"}}
    with ThreadedFake(FakeLLMConfig()) as fake:
        assert main(["check", write_config(tmp_path, fake.base_url, metrics)]) == 2
        assert fake.stats()["requests"] == 0
    assert capsys.readouterr().err == (
        "gpo-ray: error: metric function 'my_metrics.scoring:score' of task 'sums/a' cannot be imported: "
        "ModuleNotFoundError: No module named 'my_metrics'\n")


def test_check_asks_the_judge_and_prints_its_score_and_reason(tmp_path: Path, capsys):
    """A judge metric: one judge request per checked example, the judge's reason as the feedback (no Ray)."""
    examples = write_sums(tmp_path / "data" / "a", seed=1)
    fake = FakeLLMConfig(base_accuracy=0.5, answer_key=answer_key_from_examples(examples))
    judge = {"kind": "judge", "rubric": "The reply gives the correct sum.", "scale": "0..10"}
    with ThreadedFake(fake) as server:
        path = write_config(tmp_path, server.base_url, {"sums/a": judge})
        data = yaml.safe_load(Path(path).read_text())
        data["judge_model"] = {"base_url": server.base_url, "model": "fake-llm", "timeout_s": 10}
        Path(path).write_text(yaml.safe_dump(data))
        capsys.readouterr()  # the fake's start line
        assert main(["check", path, "--json"]) == 0
        roles = server.stats()["roles"]
    doc = json.loads(capsys.readouterr().out)
    checked = doc["tasks"]["sums/a"]
    assert doc["usage"] == {"task_model": {"requests": 5}, "judge": {"requests": 5}} and roles["judge"] == 5
    assert checked["metric"] == "judge" and checked["plan"]["judge_calls"] > 0
    for e in checked["examples"]:
        right = e["score"] == 1.0
        assert e["score"] in (0.0, 1.0) and e["feedback"] == (
            "The reply gives the reference answer." if right else "The reply does not give the reference answer.")
    assert doc["sampling"]["judge_model"]["model"] == "fake-llm"
