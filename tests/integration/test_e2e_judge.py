"""The LLM judge end to end, as a user runs it: `gpo-ray optimize CONFIG` with `metric: {kind: judge, ...}` on the shared
local Ray cluster against the fake endpoint (its scripted judge). The judge's calls are what `plan` said, usage.json's
judge role is what the endpoint saw, a rerun over the same response cache asks the judge nothing, the judge's reason
reaches the feedback request, and unreadable judge replies are asked again, counted as metric errors, and the run
finishes."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml

from gpo_ray.cli import main
from gpo_ray.tasks.judge import JUDGE_READ_ATTEMPTS
from gpo_ray.testing import ThreadedFake
from tests.integration.test_e2e_metrics import fake_for, write_config, write_sums
from tests.integration.usage_checks import (
    assert_files_agree_with_the_endpoint,
    assert_sent_with_metadata,
)

pytestmark = pytest.mark.usefixtures("ray_cluster")

JUDGE = {"kind": "judge", "rubric": "The reply gives the correct sum.", "scale": [1, 5]}


def _judged_config(tmp_path: Path, base_url: str, **settings) -> str:
    sources = [{"name": "sums/a", "path": str(tmp_path / "data" / "a"), "metric": JUDGE}]
    return write_config(tmp_path, base_url, sources,
                        judge_model={"base_url": base_url, "model": "fake-llm", "timeout_s": 10}, **settings)


def _planned(config_path: str, capsys) -> dict:
    capsys.readouterr()
    assert main(["plan", config_path, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_the_judge_scores_the_run_as_planned_and_a_rerun_asks_it_nothing(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    # Every candidate is new and better (the fake's skill phrase): plan's count is exact (a best prompt that is the
    # initial one would be scored on the test split once, not twice).
    phrases = [f"Think step by step, check {i}." for i in range(200)]
    fake_settings = fake_for(tmp_path, record_requests=True).model_copy(update={"optimizer_phrases": phrases})
    with ThreadedFake(fake_settings) as fake:
        config_path = _judged_config(tmp_path, fake.base_url,
                                     optimizer={"direction": "feedback", "candidate_scoring": "eval"})
        plan = _planned(config_path, capsys)
        assert plan["sampling"]["judge_model"] == {"model": "fake-llm", "temperature": 0.0, "max_tokens": 200}
        judge_calls = plan["tasks"]["sums/a"]["judge_calls"]
        assert judge_calls == plan["total"]["judge_calls"] == plan["tasks"]["sums/a"]["task_model_calls"] > 0
        assert main(["optimize", config_path, "--quiet"]) == 0
        log = fake.requests_log()
        seen = Counter(r["role"] for r in log)
        # usage.json == results.json's usage == the report's usage table (a judge row) == what the endpoint saw.
        assert_files_agree_with_the_endpoint(tmp_path / "run", fake.stats())
        usage = json.loads((tmp_path / "run" / "usage.json").read_text())
        doc = json.loads((tmp_path / "run" / "results.json").read_text())

        # Second run of the same config over a copy of the first one's response cache: no judge request at all.
        fake.reset()
        again = yaml.safe_load(Path(config_path).read_text()) | {"run_dir": str(tmp_path / "rerun")}
        (tmp_path / "rerun").mkdir()
        shutil.copytree(tmp_path / "run" / "cache", tmp_path / "rerun" / "cache")
        (tmp_path / "again.yaml").write_text(yaml.safe_dump(again))
        assert main(["optimize", str(tmp_path / "again.yaml"), "--quiet"]) == 0
        rerun = Counter(r["role"] for r in fake.requests_log())
        usage_again = json.loads((tmp_path / "rerun" / "usage.json").read_text())

    judge = usage["judge"]
    assert judge["calls"] == judge_calls == usage["task_model"]["calls"]  # one judge call per scored example
    assert judge["requests"] == seen["judge"] > 0  # usage.json's judge role is what the endpoint saw
    assert judge["requests"] + judge["cache_hits"] == judge["calls"]  # equal requests (same reply) asked once
    assert judge["prompt_tokens"] > 0 and judge["completion_tokens"] > 0
    assert doc["sampling"]["judge_model"]["temperature"] == 0.0 and doc["usage"]["judge"] == judge
    # Every request named its role and purpose (X-GPO-Role, X-GPO-Purpose) from the actors that sent it.
    assert assert_sent_with_metadata(log) == {("task_model", "answer"), ("optimizer", "candidates"),
                                              ("optimizer", "feedback"), ("judge", "judge")}
    judged = [r for r in log if r["role"] == "judge"]
    assert all(r["temperature"] == 0.0 and r["max_tokens"] == 200 for r in judged)
    entry = doc["tasks"]["sums/a"]
    assert 0 < entry["initial_eval_score"] < entry["best_eval_score"]  # the judge's scores let the prompt climb
    assert entry["best_prompt"] != entry["initial_prompt"]
    # The judge's reason is the metric's feedback, shown beside the wrong examples in the feedback request.
    feedback = [r["text"] for r in log if r["role"] == "feedback"]
    assert any("What the metric found: The reply does not give the reference answer." in t for t in feedback)

    assert rerun["judge"] == 0 and usage_again["judge"]["requests"] == 0
    assert usage_again["judge"]["cache_hits"] == usage_again["judge"]["calls"] == judge_calls


def test_unreadable_judge_replies_are_asked_again_counted_as_metric_errors_and_the_run_finishes(tmp_path, capsys):
    write_sums(tmp_path / "data" / "a", seed=1)
    with ThreadedFake(fake_for(tmp_path, judge_replies="unreadable")) as fake:
        config_path = _judged_config(tmp_path, fake.base_url, budget={"max_metric_errors": None})
        assert main(["optimize", config_path, "--quiet"]) == 0
        roles = fake.stats()["roles"]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    usage = json.loads((tmp_path / "run" / "usage.json").read_text())
    assert doc["status"] == "completed"
    (checkpoint,) = (tmp_path / "run" / "checkpoints").iterdir()
    steps = [json.loads(line) for line in checkpoint.read_text().splitlines()]
    assert all(s["counts"].get("metric_error", 0) > 0 for s in steps)
    assert doc["tasks"]["sums/a"]["initial_eval_score"] == 0.0
    # Every judge call was asked JUDGE_READ_ATTEMPTS times (each re-ask its own request), all seen by the endpoint.
    assert usage["judge"]["requests"] == roles["judge"]
    assert usage["judge"]["calls"] == JUDGE_READ_ATTEMPTS * usage["task_model"]["calls"]
