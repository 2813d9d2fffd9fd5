"""A real run with MLflow tracking on (a local file store) against the fake endpoint, then a resume of it: one MLflow
run holds both invocations, its step metrics and artifacts agree with the run directory, and results.json's
timing adds the resumed invocation's wall time to the first one's."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

pytest.importorskip("mlflow", reason="mlflow is optional: pip install mlflow-skinny to run the MLflow tests")

from mlflow.tracking import MlflowClient  # noqa: E402

from gpo_ray.api import optimize, resume  # noqa: E402
from gpo_ray.testing import ThreadedFake  # noqa: E402

from tests.integration.test_e2e_optimize import fake_config, make_config  # noqa: E402

pytestmark = pytest.mark.usefixtures("ray_cluster")


def test_a_run_and_its_resume_are_one_mlflow_run_with_the_runs_numbers(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 wants a database; a folder is enough here
    store = f"file://{tmp_path / 'mlruns'}"
    base = make_config(tmp_path / "cfg", "http://placeholder/v1")
    with ThreadedFake(fake_config(base)) as fake:
        config = make_config(tmp_path / "x", fake.base_url)
        config = config.model_copy(update={"tracking": config.tracking.model_copy(
            update={"mlflow": True, "mlflow_tracking_uri": store, "mlflow_experiment": "gpo-test"})})
        optimize(config)
        first = json.loads((config.run_dir / "results.json").read_text())
        run_id = json.loads((config.run_dir / "tracking.json").read_text())["mlflow"]["run_id"]
        resume(config.run_dir)
    results = json.loads((config.run_dir / "results.json").read_text())
    usage = json.loads((config.run_dir / "usage.json").read_text())

    # timing: the run's start is kept, the resumed invocation's time is added
    t0, t1 = first["timing"], results["timing"]
    assert t1["started_at"] == t0["started_at"]
    assert datetime.fromisoformat(t1["updated_at"].replace("Z", "+00:00")) >= \
        datetime.fromisoformat(t0["updated_at"].replace("Z", "+00:00"))
    assert 0 < t0["wall_time_s"] < t1["wall_time_s"]

    client = MlflowClient(tracking_uri=store)
    experiment = client.get_experiment_by_name("gpo-test")
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id], "the resume continued the same MLflow run"
    run = client.get_run(run_id)
    assert run.info.run_name == config.run_dir.name and run.info.status == "FINISHED"
    assert run.data.params["optimizer.candidates"] == "3"
    for task, entry in results["tasks"].items():
        history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, f"eval_score.{task}"))
        assert history[0] == (0, entry["initial_eval_score"])
        assert history[1:] == [(s["step"], s["eval_score"]) for s in entry["steps"]]
        assert run.data.metrics[f"best_test_score.{task}"] == entry["best_test_score"]
    assert run.data.metrics["usage.task_model.requests"] == usage["task_model"]["requests"]
    assert run.data.metrics["wall_time_s"] == pytest.approx(t1["wall_time_s"], abs=1.0)
    assert {a.path for a in client.list_artifacts(run_id)} == {"best_prompts.json", "results.json"}
    prompts = json.loads(open(client.download_artifacts(run_id, "best_prompts.json", str(tmp_path))).read())
    assert {t: p["best_prompt"] for t, p in prompts.items()} == \
        {t: e["best_prompt"] for t, e in results["tasks"].items()}
