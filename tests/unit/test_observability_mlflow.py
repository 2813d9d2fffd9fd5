"""The MLflow tracker against a local file store: one MLflow run per gpo-ray run, continued on resume; params without
secrets; per-step metrics at step=t; best prompts and results.json as artifacts; a failing store never raises."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mlflow", reason="mlflow is optional: pip install mlflow-skinny to run the MLflow tests")

from mlflow.tracking import MlflowClient  # noqa: E402

from gpo_ray.config import RunConfig  # noqa: E402
from gpo_ray.core.results import StepResult  # noqa: E402
from gpo_ray.core.types import ScoredCandidate  # noqa: E402
from gpo_ray.observability.mlflow_tracking import TRACKING_FILE, MLflowTracker, flatten_params  # noqa: E402
from gpo_ray.observability.tracking import NullTracker, open_tracker  # noqa: E402

from tests.unit.test_observability import RecordingMetrics  # noqa: E402

TASK = "bbh/navigate"


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database; a folder is enough here
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return f"file://{tmp_path / 'mlruns'}"


def make_config(uri: str, **budget) -> RunConfig:
    return RunConfig(tasks=[TASK], task_model={"base_url": "http://llm:8000/v1", "api_key_env": "TASK_API_KEY"},
                     budget=budget, tracking={"mlflow": True, "mlflow_tracking_uri": uri, "mlflow_experiment": "exp"})


def step(t: int, score: float) -> StepResult:
    cands = () if t == 0 else (ScoredCandidate(prompt=f"p{t}", score=score, edit_distance=3),
                               ScoredCandidate(prompt=f"q{t}", score=score / 2, edit_distance=5))
    return StepResult(step=t, edit_budget=0 if t == 0 else 10 - t, prompt=f"p{t}", eval_score=score, candidates=cands)


def results_doc(run_path, *, best: float) -> dict:
    doc = {"status": "completed", "tasks": {TASK: {"best_prompt": "p2", "best_eval_score": best, "best_test_score": 0.5,
                                                   "best_step": 2, "initial_prompt": "p0", "initial_eval_score": 0.1,
                                                   "initial_test_score": 0.2, "status": "completed", "steps": []}},
           "timing": {"wall_time_s": 12.5}}
    (run_path / "results.json").write_text(json.dumps(doc))
    return doc


USAGE = {"optimizer": {"requests": 7, "errors": {"rate_limited": 2}}, "task_model": {"requests": 40, "errors": {}}}


def test_a_run_and_its_resume_share_one_mlflow_run(tmp_path, store):
    run_path = tmp_path / "20250101-000000-abcd"
    run_path.mkdir()
    tracker = open_tracker(make_config(store), run_path)
    assert isinstance(tracker, MLflowTracker)
    for t, score in enumerate((0.1, 0.3, 0.6)):
        tracker.log_step(TASK, step(t, score), best_eval_score=max(0.1, score))
    tracker.finish(status="budget_exhausted", results=results_doc(run_path, best=0.6), usage=USAGE,
                   results_file=run_path / "results.json")
    run_id = json.loads((run_path / TRACKING_FILE).read_text())["mlflow"]["run_id"]

    resumed = open_tracker(make_config(store, max_calls=10), run_path)  # budget may change on resume
    assert isinstance(resumed, MLflowTracker) and resumed.run_id == run_id
    client = MlflowClient(tracking_uri=store)
    assert client.get_run(run_id).info.status == "RUNNING"
    resumed.log_step(TASK, step(3, 0.7), best_eval_score=0.7)
    resumed.finish(status="completed", results=results_doc(run_path, best=0.7), usage=USAGE,
                   results_file=run_path / "results.json")
    assert resumed.errors == 0 and tracker.errors == 0

    run = client.get_run(run_id)
    assert run.info.run_name == run_path.name and run.info.status == "FINISHED"
    assert run.data.tags["gpo.status"] == "completed"
    params = run.data.params
    assert params["optimizer.epochs"] == "3" and params["task_model.api_key_env"] == "TASK_API_KEY"
    assert params["budget.max_calls"] == "null", "the first invocation's value stays (params are immutable)"
    assert not any(k.startswith("tracking.") for k in params)
    history = client.get_metric_history(run_id, f"eval_score.{TASK}")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.1), (1, 0.3), (2, 0.6), (3, 0.7)]
    assert [m.value for m in client.get_metric_history(run_id, f"candidates.{TASK}")
            if m.step == 2] == [2.0]
    assert run.data.metrics["usage.optimizer.requests"] == 7 and run.data.metrics["usage.optimizer.errors"] == 2
    assert run.data.metrics["wall_time_s"] == 12.5 and run.data.metrics[f"best_test_score.{TASK}"] == 0.5
    assert {a.path for a in client.list_artifacts(run_id)} == {"best_prompts.json", "results.json"}
    prompts = json.loads(open(client.download_artifacts(run_id, "best_prompts.json", str(tmp_path))).read())
    assert prompts[TASK]["best_prompt"] == "p2" and prompts[TASK]["best_eval_score"] == 0.7


def test_a_failing_tracking_store_is_logged_and_counted_never_raised(tmp_path, store):
    class Broken:
        def __getattr__(self, name):
            def fail(*args, **kwargs):
                raise ConnectionError("mlflow server at https://u:pw@mlflow.example went away")

            return fail

    metrics = RecordingMetrics()
    tracker = MLflowTracker(Broken(), "run-id", metrics=metrics)
    tracker.log_step(TASK, step(1, 0.5), best_eval_score=0.5)
    tracker.finish(status="completed", results=results_doc(tmp_path, best=0.5), usage=USAGE,
                   results_file=tmp_path / "results.json")
    assert tracker.errors == 2
    assert metrics.counts[("gpo_tracking_errors_total", (("backend", "mlflow"),))] == 2

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store should be")
    metrics = RecordingMetrics()
    run_path = tmp_path / "run"
    run_path.mkdir()
    assert isinstance(open_tracker(make_config(f"file://{blocked}"), run_path, metrics=metrics), NullTracker)
    assert metrics.counts[("gpo_tracking_errors_total", (("backend", "mlflow"),))] == 1


def test_params_are_the_public_config_flattened():
    params = flatten_params(make_config("file:///x").public_dict())
    assert params["optimizer.schedule.kind"] == "cosine" and params["tasks"] == '["bbh/navigate"]'
    assert params["task_model.base_url"] == "http://llm:8000/v1"
    assert not any(k.startswith("tracking") for k in params)
    assert all(len(v) <= 6000 for v in params.values())
