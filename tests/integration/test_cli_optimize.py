"""`gpo-ray optimize` as a user runs it against the fake endpoint: a BBH task from the shared data,
exit code 1 with the endpoint named when it is down, the global call budget."""

from __future__ import annotations

import json

import pytest

from gpo_ray.cli import main
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples


pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_optimize_a_bbh_task_writes_results_json(shared_data_dir, tmp_path, capsys):
    (task,) = resolve_tasks(["bbh/navigate"], data_dir=shared_data_dir)
    key = answer_key_from_examples([*task.train, *task.eval, *task.test])
    with ThreadedFake(FakeLLMConfig(answer_key=key, base_accuracy=0.4,
                                       skill_phrases={"step by step": 0.3, "carefully": 0.2})) as fake:
        code = main(["optimize", "--task", "bbh/navigate", "--data-dir", str(shared_data_dir),
                     "--base-url", fake.base_url, "--model", "fake-llm", "--epochs", "1", "--batch-size", "16",
                     "--candidates", "3", "--run-dir", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    out = capsys.readouterr().out
    assert "bbh/navigate" in out and "best" in out
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    entry = doc["tasks"]["bbh/navigate"]
    assert entry["initial_prompt"] == "Let's solve the problem."
    assert len(entry["steps"]) == 3  # 48 training examples in batches of 16, one epoch
    assert [s["step"] for s in entry["steps"]] == [1, 2, 3]
    for key_ in ("initial_eval_score", "initial_test_score", "best_eval_score", "best_test_score"):
        assert 0.0 <= entry[key_] <= 1.0
    assert entry["best_eval_score"] >= entry["initial_eval_score"]
    assert doc["usage"]["optimizer"]["requests"] >= 3 and doc["usage"]["task_model"]["requests"] > 48
    assert "api_key" not in json.dumps(doc)


def test_endpoint_down_exits_1_naming_the_endpoint_and_resume(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "tasks: [example/arithmetic]\n"
        "task_model: {base_url: 'http://127.0.0.1:9/v1', model: m, max_retries: 1, timeout_s: 2}\n"
        "optimizer_model: {base_url: 'http://127.0.0.1:9/v1', model: m, max_retries: 1, timeout_s: 2}\n"
        f"run_dir: {tmp_path / 'run'}\n"
    )
    code = main(["optimize", str(cfg), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "127.0.0.1:9" in err and "resume" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_global_call_budget_stops_after_a_completed_step(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    with ThreadedFake(FakeLLMConfig()) as fake:
        cfg.write_text(
            "tasks: [example/arithmetic]\n"
            f"task_model: {{base_url: '{fake.base_url}', model: fake}}\n"
            f"optimizer_model: {{base_url: '{fake.base_url}', model: fake}}\n"
            "optimizer: {epochs: 3, batch_size: 4, candidates: 2}\n"
            "budget: {max_calls: 40}\n"
            f"run_dir: {tmp_path / 'run'}\n"
        )
        code = main(["optimize", str(cfg), "--quiet"])
        assert code == 0
        doc = json.loads((tmp_path / "run" / "results.json").read_text())
        entry = doc["tasks"]["example/arithmetic"]
        assert doc["status"] == "budget_exhausted" and entry["status"] == "budget_exhausted"
        assert 1 <= len(entry["steps"]) < 6
        # The budget is for the run, not per invocation: a resume does not get a fresh one.
        assert main(["resume", str(tmp_path / "run"), "--quiet"]) == 0
        again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["status"] == "budget_exhausted"
    assert len(again["tasks"]["example/arithmetic"]["steps"]) == len(entry["steps"])
    assert again["usage"]["task_model"]["requests"] >= doc["usage"]["task_model"]["requests"]


def test_two_endpoints_of_one_role_share_the_work(tmp_path):
    with ThreadedFake(FakeLLMConfig(latency_s=0.01)) as one, ThreadedFake(FakeLLMConfig(latency_s=0.01)) as two:
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            "tasks: [example/arithmetic]\n"
            f"task_model: {{model: fake, endpoints: [{{base_url: '{one.base_url}'}}, {{base_url: '{two.base_url}'}}]}}\n"
            f"optimizer_model: {{base_url: '{one.base_url}', model: fake}}\n"
            "optimizer: {epochs: 1, batch_size: 4, candidates: 2}\n"
            f"run_dir: {tmp_path / 'run'}\n"
        )
        assert main(["optimize", str(cfg), "--quiet"]) == 0
        task_requests_one = one.stats()["roles"].get("task", 0)
        task_requests_two = two.stats()["roles"].get("task", 0)
    assert task_requests_one > 0 and task_requests_two > 0
    assert two.stats()["roles"].get("optimizer", 0) == 0


def test_relevance_retrieval_with_an_openai_compatible_embeddings_endpoint(tmp_path):
    with ThreadedFake(FakeLLMConfig()) as fake:
        cfg = tmp_path / "run.yaml"
        cfg.write_text(
            "tasks: [example/arithmetic]\n"
            f"task_model: {{base_url: '{fake.base_url}', model: fake}}\n"
            f"optimizer_model: {{base_url: '{fake.base_url}', model: fake}}\n"
            f"embedder: {{kind: openai, base_url: '{fake.base_url}', model: fake-embed}}\n"
            "optimizer: {epochs: 1, batch_size: 4, candidates: 2, retrieval: relevance}\n"
            f"run_dir: {tmp_path / 'run'}\n"
        )
        assert main(["optimize", str(cfg), "--quiet"]) == 0
        assert fake.stats()["embedding_requests"] >= 2  # trajectory prompts were embedded by the endpoint
