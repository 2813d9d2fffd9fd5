"""Experiment trackers the controller reports to (MLflow today), behind one small protocol.

A tracker mirrors the run for people who browse runs in a tracking UI; the run directory stays the truth.
So a tracker never fails a run: its errors are logged and counted, and a tracker that cannot start is
replaced by the no-op one. Whether one is wanted is decided at the edge (`check_tracking`), before anything runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Protocol

import structlog

from gpo_ray.config import RunConfig, TrackingSettings
from gpo_ray.core.results import StepResult
from gpo_ray.errors import ConfigError
from gpo_ray.observability.metrics import Metrics, NullMetrics
from gpo_ray.observability.mlflow_tracking import MLflowTracker, mlflow_tracking_uri, one_line_error


class RunTracker(Protocol):
    def log_step(self, task: str, record: StepResult, *, best_eval_score: float) -> None:
        """Queue one step's numbers; returns at once (the driver's event loop never waits on a tracker)."""

    def finish(self, *, status: str, results: dict[str, Any], usage: dict[str, Any], results_file: Path) -> None:
        """Log the end of this invocation and wait until everything queued is sent (blocking: run it in a thread)."""


class NullTracker:
    def log_step(self, task: str, record: StepResult, *, best_eval_score: float) -> None:
        pass

    def finish(self, *, status: str, results: dict[str, Any], usage: dict[str, Any], results_file: Path) -> None:
        pass


def mlflow_installed() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def mlflow_wanted(settings: TrackingSettings) -> bool:
    """`tracking.mlflow`: True = on (mlflow must be installed), False = off, None = on when mlflow is installed and
    a tracking URI is configured. ConfigError (one line) when it is asked for and missing."""
    if settings.mlflow is False:
        return False
    if settings.mlflow is True:
        if not mlflow_installed():
            raise ConfigError("tracking.mlflow is on but mlflow is not installed: `pip install mlflow-skinny`, "
                              "or set tracking.mlflow: false")
        return True
    return mlflow_installed() and mlflow_tracking_uri(settings) is not None


def check_tracking(config: RunConfig) -> None:
    """Refuse, before a run starts, a tracker that is asked for and cannot be had."""
    mlflow_wanted(config.tracking)


def open_tracker(config: RunConfig, run_path: Path, *, metrics: Metrics | None = None) -> RunTracker:
    """The tracker for this invocation of a run: MLflow when wanted (a resumed run continues its MLflow run),
    else the no-op one. Call from the driver only."""
    if not mlflow_wanted(config.tracking):
        return NullTracker()
    metrics = metrics or NullMetrics()
    try:
        return MLflowTracker.open(config, run_path, metrics=metrics)
    except Exception as e:  # noqa: BLE001 - a tracker never stops a run
        metrics.inc("gpo_tracking_errors_total", backend="mlflow")
        structlog.get_logger().warning("mlflow_unavailable", error=one_line_error(e))
        return NullTracker()

