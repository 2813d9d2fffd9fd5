"""MLflow tracking: one MLflow run per gpo-ray run, continued on resume.

Only the driver talks to MLflow, through `MlflowClient` (no global active run, so nothing leaks between runs
in one process). Calls go through one background thread in order, so a slow tracking server never holds up
the optimization; every failure is logged and counted, never raised.

Layout in MLflow: run name = run directory name; params = the flattened public config (env var names only,
never keys; `tracking.*` left out, it may hold a URI with credentials); per step `eval_score.<task>`,
`best_eval_score.<task>`, `edit_budget.<task>`, `candidates.<task>` at step=t; at the end `usage.<role>.<field>`,
`wall_time_s`, test scores, and the artifacts best_prompts.json and results.json.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.atomic import write_json_atomic
from gpo_ray.config import RunConfig, TrackingSettings
from gpo_ray.core.results import StepResult
from gpo_ray.errors import error_line
from gpo_ray.observability.metrics import Metrics
from gpo_ray.vocabulary import RunStatus

TRACKING_FILE = "tracking.json"  # in the run directory: {"mlflow": {"run_id": ..., "experiment_id": ...}}
MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value
BATCH = 100  # MLflow's limit on params per log_batch (metrics allow 1000)
_UNSAFE_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")
FINISHED = (RunStatus.COMPLETED, RunStatus.BUDGET_EXHAUSTED)  # MLflow's FINISHED; a stopped run is FAILED there
_URL_CREDENTIALS = re.compile(r"://[^/@\s]+@")


def mlflow_tracking_uri(settings: TrackingSettings) -> str | None:
    return settings.mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or None


def one_line_error(e: BaseException) -> str:
    """An error for the log: its first line, short, with any user:password@ of a URL masked (tracking URIs
    may carry credentials)."""
    line = error_line(e) if str(e).strip() else ""
    return _URL_CREDENTIALS.sub("://***@", f"{type(e).__name__}: {line}")[:300]


def flatten_params(config: dict[str, Any], *, prefix: str = "") -> dict[str, str]:
    """Nested config -> {"optimizer.schedule.initial": "50", ...}; lists as JSON. Leaves out `tracking`."""
    out: dict[str, str] = {}
    for key, value in config.items():
        if not prefix and key == "tracking":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, prefix=f"{name}."))
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
            out[metric_key(name)] = text[:MAX_PARAM_VALUE]
    return out


def metric_key(name: str) -> str:
    """A task name as MLflow accepts it in a key (letters, digits, _ - . / and space)."""
    return _UNSAFE_KEY.sub("_", name)


def step_metrics(task: str, record: StepResult, *, best_eval_score: float) -> dict[str, float]:
    t = metric_key(task)
    values = {
        f"eval_score.{t}": record.eval_score,
        f"best_eval_score.{t}": best_eval_score,
        f"edit_budget.{t}": float(record.edit_budget),
        f"candidates.{t}": float(len(record.candidates)),
    }
    if record.candidates:
        scores = [c.score for c in record.candidates]
        values[f"candidate_score_max.{t}"] = max(scores)
        values[f"candidate_score_mean.{t}"] = sum(scores) / len(scores)
    return values


def final_metrics(results: dict[str, Any], usage: dict[str, Any]) -> dict[str, float]:
    values: dict[str, float] = {}
    for role, counts in usage.items():
        if not isinstance(counts, dict):
            continue
        for field, v in counts.items():
            if isinstance(v, dict):  # errors by kind
                values[f"usage.{role}.{field}"] = float(sum(x for x in v.values() if isinstance(x, (int, float))))
            elif isinstance(v, (int, float)):
                values[f"usage.{role}.{field}"] = float(v)
    wall = (results.get("timing") or {}).get("wall_time_s")
    if isinstance(wall, (int, float)):
        values["wall_time_s"] = float(wall)
    for task, entry in (results.get("tasks") or {}).items():
        for key in ("initial_eval_score", "best_eval_score", "initial_test_score", "best_test_score"):
            v = entry.get(key)
            if isinstance(v, (int, float)):
                values[f"{key}.{metric_key(task)}"] = float(v)
    return values


def best_prompts(results: dict[str, Any]) -> dict[str, Any]:
    """The artifact users load: per task the best prompt, its scores and step, and where it started."""
    return {
        task: {key: entry.get(key) for key in ("best_prompt", "best_eval_score", "best_test_score", "best_step",
                                               "initial_prompt", "initial_eval_score", "initial_test_score", "status")}
        for task, entry in (results.get("tasks") or {}).items()
    }


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class MLflowTracker:
    def __init__(self, client: Any, run_id: str, *, metrics: Metrics) -> None:
        self.client = client
        self.run_id = run_id
        self.metrics = metrics
        self.errors = 0
        self.log = structlog.get_logger().bind(mlflow_run_id=run_id)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gpo-mlflow")

    # opening ------------------------------------------------------------------
    @classmethod
    def open(cls, config: RunConfig, run_path: Path, *, metrics: Metrics) -> MLflowTracker:
        """Create or reopen the MLflow run of `run_path` and log the config as params (raises on failure)."""
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=mlflow_tracking_uri(config.tracking))
        name = config.tracking.mlflow_experiment
        experiment = client.get_experiment_by_name(name)
        if experiment is not None:
            experiment_id = experiment.experiment_id
        else:
            try:
                experiment_id = client.create_experiment(name)
            except Exception:  # noqa: BLE001 - another driver created it meanwhile
                experiment = client.get_experiment_by_name(name)
                if experiment is None:
                    raise
                experiment_id = experiment.experiment_id
        run_id = cls._existing_run(client, run_path, experiment_id)
        if run_id is None:
            run = client.create_run(experiment_id, run_name=run_path.name,
                                    tags={"gpo.run_dir": str(run_path.resolve()), "gpo.fingerprint": config.fingerprint()})
            run_id = run.info.run_id
            write_json_atomic(run_path / TRACKING_FILE, {"mlflow": {"run_id": run_id, "experiment_id": experiment_id}})
            logged: dict[str, str] = {}
        else:
            client.update_run(run_id, status="RUNNING")
            logged = dict(client.get_run(run_id).data.params)
        tracker = cls(client, run_id, metrics=metrics)
        tracker._log_params(flatten_params(config.public_dict()), already=logged)
        tracker.log.info("mlflow_run_opened", experiment=name, resumed=bool(logged))
        return tracker

    @staticmethod
    def _existing_run(client: Any, run_path: Path, experiment_id: str) -> str | None:
        """The run id a previous invocation stored, if that run is still in this tracking store's experiment."""
        try:
            stored = json.loads((run_path / TRACKING_FILE).read_text(encoding="utf-8"))["mlflow"]["run_id"]
            run = client.get_run(stored)
        except Exception:  # noqa: BLE001 - no file, or a run this store does not know: start a new one
            return None
        return stored if run.info.experiment_id == experiment_id else None

    def _log_params(self, params: dict[str, str], *, already: dict[str, str]) -> None:
        """Params are immutable in MLflow: on resume only new keys are logged (tracking/cluster/budget may differ)."""
        from mlflow.entities import Param

        new = [Param(k, v) for k, v in sorted(params.items()) if k not in already]
        for chunk in _chunks(new, BATCH):
            self.client.log_batch(self.run_id, params=chunk)

    # during the run -------------------------------------------------------------
    def _submit(self, what: str, fn: Callable[[], None]) -> None:
        def guarded() -> None:
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - the run's own files are the truth
                self.errors += 1
                self.metrics.inc("gpo_tracking_errors_total", backend="mlflow")
                self.log.warning("mlflow_error", action=what, error=one_line_error(e))

        try:
            self._executor.submit(guarded)
        except RuntimeError:  # executor already shut down
            pass

    def _log_metrics(self, values: dict[str, float], *, step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in sorted(values.items())]
        for chunk in _chunks(metrics, 1000):
            self.client.log_batch(self.run_id, metrics=chunk)

    def log_step(self, task: str, record: StepResult, *, best_eval_score: float) -> None:
        values = step_metrics(task, record, best_eval_score=best_eval_score)
        self._submit("log_step", lambda: self._log_metrics(values, step=record.step))

    def finish(self, *, status: str, results: dict[str, Any], usage: dict[str, Any], results_file: Path) -> None:
        values = final_metrics(results, usage)
        prompts = best_prompts(results)

        def end() -> None:
            self._log_metrics(values, step=0)
            with tempfile.TemporaryDirectory(prefix="gpo-mlflow-") as tmp:
                path = Path(tmp) / "best_prompts.json"
                path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False), encoding="utf-8")
                self.client.log_artifact(self.run_id, str(path))
            if results_file.is_file():
                self.client.log_artifact(self.run_id, str(results_file))
            self.client.set_tag(self.run_id, "gpo.status", status)
            self.client.set_terminated(self.run_id, "FINISHED" if status in FINISHED
                                       else "FAILED")

        self._submit("finish", end)
        self._executor.shutdown(wait=True)
        self.log.info("mlflow_run_finished", status=status, errors=self.errors)
