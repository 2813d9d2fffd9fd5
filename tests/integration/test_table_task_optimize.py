"""`gpo-ray plan` and `gpo-ray optimize` on a user's CSV task against the fake endpoint: one table carved by seed,
an input template over two columns, the prompt sent as the system message, results.json and the export."""

from __future__ import annotations

import csv
import json

import pytest

from gpo_ray.cli import main
from gpo_ray.config import load_config
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples

pytestmark = pytest.mark.usefixtures("ray_cluster")


def write_tickets(path, n: int = 24) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["id", "subject", "body", "team"])
        for i in range(n):
            team = ("billing", "tech", "sales")[i % 3]
            writer.writerow([f"T-{i}", f"Issue {i}", f"Customer {i} writes, about {team} matters.", team])


def run_config(tmp_path, base_url: str):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks: [triage]\n"
        "task_sources:\n"
        "  - {name: triage, format: csv, path: tickets.csv, input_template: \"Ticket: {subject}\\n{body}\",\n"
        "     answer_field: team, id_field: id, metric: exact_match, placement: system,\n"
        "     train_size: 8, eval_size: 8, split_seed: 3}\n"
        f"task_model: {{base_url: '{base_url}', model: fake, max_tokens: 32}}\n"
        f"optimizer_model: {{base_url: '{base_url}', model: fake}}\n"
        "optimizer: {epochs: 1, batch_size: 4, candidates: 2, initial_prompt: Route the ticket.}\n"
        f"run_dir: {tmp_path / 'run'}\n",
        encoding="utf-8",
    )
    return cfg


def test_plan_and_optimize_a_csv_task_with_the_prompt_as_system_message(tmp_path, capsys):
    write_tickets(tmp_path / "tickets.csv")
    config = load_config(run_config(tmp_path, "http://127.0.0.1:9/v1"))
    (task,) = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    assert task.train[0].input.startswith("Ticket: Issue ") and task.train[0].id.startswith("T-")
    key = answer_key_from_examples([*task.train, *task.eval, *task.test])
    with ThreadedFake(FakeLLMConfig(answer_key=key, base_accuracy=0.4,
                                    skill_phrases={"step by step": 0.3, "carefully": 0.2},
                                    optimizer_phrases=["Think step by step.", "Read carefully."],
                                    record_requests=True)) as fake:
        cfg = run_config(tmp_path, fake.base_url)
        assert main(["plan", str(cfg)]) == 0
        assert "triage" in capsys.readouterr().out
        assert main(["optimize", str(cfg), "--quiet"]) == 0
        log = fake.requests_log()

    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    entry = doc["tasks"]["triage"]
    assert entry["initial_prompt"] == "Route the ticket."
    assert [s["step"] for s in entry["steps"]] == [1, 2]  # 8 training rows in batches of 4, one epoch
    for score in ("initial_eval_score", "best_eval_score", "best_test_score"):
        assert 0.0 <= entry[score] <= 1.0
    assert entry["best_eval_score"] >= entry["initial_eval_score"]
    # With placement system the user message is the templated question alone: the prompt went to the system role.
    questions = {e.input for e in (*task.train, *task.eval, *task.test)}
    task_texts = [r["text"] for r in log if r["role"] == "task"]
    assert task_texts and all(text in questions for text in task_texts)
    assert all(text.startswith("Ticket: Issue ") for text in task_texts)

    assert main(["export", str(tmp_path / "run"), "--output", str(tmp_path / "best.json")]) == 0
    exported = json.loads((tmp_path / "best.json").read_text())
    assert exported["prompts"]["triage"]["placement"] == "system"
