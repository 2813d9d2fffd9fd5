"""results.json as the state writer writes it: serialised from its pydantic model (`ResultsDocument`), the file is
what `json.dumps(document, indent=2, ensure_ascii=False)` writes (the text runs written before the state writer
have), and it follows every change of a task's entry."""

from __future__ import annotations

import asyncio
import json
import math

import structlog

from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.controller.ledger import UsageLedger
from gpo_ray.controller.state_writer import ResultsDocument, StateWriter
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import RunStatus


def writer(tmp_path) -> StateWriter:
    role = LLMRoleConfig(base_url="http://127.0.0.1:9/v1", model="m")
    config = RunConfig(tasks=["example/arithmetic"], task_model=role, optimizer_model=role,
                       tracking={"ray_metrics": False, "mlflow": False}, run_dir=tmp_path / "run")
    run_dir = RunDirectory(tmp_path / "run")
    run_dir.create(config)
    ledger = UsageLedger(config, before={}, refiners=[], evaluators=[], log=structlog.get_logger())
    return StateWriter(run_dir, config, ledger)


def entry(best: float, prompt: str) -> dict:
    return {"initial_prompt": "Solve.", "best_prompt": prompt, "best_eval_score": best, "best_test_score": None,
            "status": RunStatus.RUNNING, "steps": [{"step": 1, "candidates": [{"prompt": prompt, "score": best}]}]}


def test_the_text_is_the_documents_json_and_follows_every_change(tmp_path) -> None:
    w = writer(tmp_path)
    assert json.loads(w.results_text(RunStatus.RUNNING))["tasks"] == {}
    for i in range(50):
        w.task_entries[f"bbh/t{i:02d}"] = entry(i / 100, f"Think step by step {i} — «quoted»\nsecond line\t\"\\")
    w.ledger.usage = {"optimizer": {"requests": 3, "by_model": {"m": 3}, "errors": {}}, "task_model": {}}

    def expected() -> str:
        doc = w.results_document(RunStatus.RUNNING)
        doc["timing"] = json.loads(text)["timing"]  # the clock moves between the two calls
        return json.dumps(doc, indent=2, ensure_ascii=False)

    text = w.results_text(RunStatus.RUNNING)
    assert text == expected()
    w.task_entries["bbh/t07"] = entry(0.99, "A better prompt.")  # an entry is replaced when its task moves on
    text = w.results_text(RunStatus.COMPLETED)
    assert text == expected().replace('"status": "running",\n  "run_dir"', '"status": "completed",\n  "run_dir"', 1)
    assert json.loads(text)["tasks"]["bbh/t07"]["best_prompt"] == "A better prompt."
    assert json.loads(text)["status"] == "completed"


def test_odd_numbers_read_back_as_they_were() -> None:
    """NaN (a metric's) is written as json.dumps writes it, not null; a float below 1e-4 is spelled otherwise
    (`0.000095` for `9.5e-05`) but reads back equal."""
    scores = [float("nan"), 9.5e-05, 1.2345e-07, 1e-300, 1e16, 0.1 + 0.2, -0.0, 2**64]
    doc = {"status": RunStatus.RUNNING, "run_dir": "/r", "sampling": {}, "tasks": {"t": {"scores": scores}},
           "usage": {}, "timing": {}}
    text = ResultsDocument.model_validate(doc).text()
    back = json.loads(text)["tasks"]["t"]["scores"]
    assert math.isnan(back[0]) and back[1:] == scores[1:]
    assert "NaN" in text
    big = [s for s in scores if not (isinstance(s, float) and (math.isnan(s) or 0 < abs(s) < 1e-4))]
    assert ResultsDocument.model_validate({**doc, "tasks": {"t": {"scores": big}}}).text() == json.dumps(
        {**doc, "tasks": {"t": {"scores": big}}}, indent=2, ensure_ascii=False)


def test_written_results_read_back(tmp_path) -> None:
    w = writer(tmp_path)
    w.task_entries["a"] = entry(0.5, "P")
    asyncio.run(w.write(RunStatus.RUNNING))
    assert json.loads(w.run_dir.results_file.read_text())["tasks"]["a"]["best_prompt"] == "P"
    asyncio.run(w.write(RunStatus.COMPLETED))
    asyncio.run(w.write(RunStatus.RUNNING))  # a deferred write after the last one does not say "running" again
    assert json.loads(w.run_dir.results_file.read_text())["status"] == "completed"
    assert json.loads(w.run_dir.usage_file.read_text()) == w.ledger.usage


def test_the_controllers_names_are_still_importable_from_controller_py() -> None:
    from gpo_ray.controller import controller, ledger, state_writer

    for name in ("UsageAcrossRestarts", "UsageLedger", "sum_usage", "counts_went_down"):
        assert getattr(controller, name) is getattr(ledger, name)
    for name in ("RunClock", "StateWriter", "partial_task_result", "STATE_INTERVAL_S", "utc_iso"):
        assert getattr(controller, name) is getattr(state_writer, name)
