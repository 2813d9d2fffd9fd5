"""results.json at a thousand tasks: the controller keeps each task's entry serialised and re-serialises only the
entries that changed, and the file it writes is exactly what `json.dumps(document, indent=2)` would write."""

from __future__ import annotations

import json

from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.controller.controller import Controller
from gpo_ray.controller.progress import LogProgress
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import RunStatus


def controller(tmp_path) -> Controller:
    role = LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m")
    config = RunConfig(tasks=["example/arithmetic"], task_model=role, optimizer_model=role,
                       tracking={"ray_metrics": False, "mlflow": False}, run_dir=tmp_path / "run")
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create(config)
    return Controller(config, [], run_dir, memory=None, refiners=[], evaluators=[], progress=LogProgress(),
                      structured=False)


def entry(best: float, prompt: str) -> dict:
    return {"initial_prompt": "Solve.", "best_prompt": prompt, "best_eval_score": best, "best_test_score": None,
            "status": RunStatus.RUNNING, "steps": [{"step": 1, "candidates": [{"prompt": prompt, "score": best}]}]}


def test_the_text_is_the_documents_json_and_follows_every_change(tmp_path) -> None:
    c = controller(tmp_path)
    assert json.loads(c.results_text(RunStatus.RUNNING))["tasks"] == {}
    for i in range(50):
        c.task_entries[f"bbh/t{i:02d}"] = entry(i / 100, f"Think step by step {i} — «quoted»\nsecond line")
    c.usage = {"optimizer": {"requests": 3, "by_model": {"m": 3}}, "task_model": {}}

    def expected() -> str:
        doc = c.results_document(RunStatus.RUNNING)
        doc["timing"] = json.loads(text)["timing"]  # the clock moves between the two calls
        return json.dumps(doc, indent=2, ensure_ascii=False)

    text = c.results_text(RunStatus.RUNNING)
    assert text == expected()
    c.task_entries["bbh/t07"] = entry(0.99, "A better prompt.")  # an entry is replaced when its task moves on
    text = c.results_text(RunStatus.COMPLETED)
    assert text == expected().replace('"status": "running",\n  "run_dir"', '"status": "completed",\n  "run_dir"', 1)
    assert json.loads(text)["tasks"]["bbh/t07"]["best_prompt"] == "A better prompt."
    assert json.loads(text)["status"] == "completed"


def test_written_results_read_back(tmp_path) -> None:
    import asyncio

    c = controller(tmp_path)
    c.task_entries["a"] = entry(0.5, "P")
    asyncio.run(c._write_state(RunStatus.RUNNING))
    assert json.loads(c.run_dir.results_file.read_text())["tasks"]["a"]["best_prompt"] == "P"
