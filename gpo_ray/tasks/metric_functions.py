"""A Python metric's function: imported by name, its module's source hashed into the run's fingerprint.

The driver imports each function once when a run starts or resumes, so a name that cannot be imported stops the run
before the first LLM call with one line (`InputError`, exit code 2); the evaluator actors import it again to score.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gpo_ray.config import PythonMetric
from gpo_ray.errors import InputError, error_line

if TYPE_CHECKING:
    from gpo_ray.config import RunConfig


def load_metric_function(function: str, *, task: str = "") -> Callable[..., Any]:
    """The callable `function` ("package.module:name") names; InputError when it cannot be imported or called."""
    module_name, _, name = function.partition(":")
    where = f"metric function {function!r}" + (f" of task {task!r}" if task else "")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 - a broken module raises anything while it is imported
        raise InputError(f"{where} cannot be imported: {type(e).__name__}: {error_line(e)}") from None
    found = getattr(module, name, None)
    if found is None:
        raise InputError(f"{where} cannot be imported: module {module_name!r} has no {name!r}")
    if not callable(found):
        raise InputError(f"{where} is not callable: it is {type(found).__name__}")
    return found


def source_hash(function: str, *, task: str = "") -> str:
    """A hash of the source of the module that defines the function (a helper it calls is part of the metric too);
    of the function alone when the module's source cannot be read."""
    found = load_metric_function(function, task=task)
    module = inspect.getmodule(found)
    try:
        text = inspect.getsource(module) if module is not None else inspect.getsource(found)
    except (OSError, TypeError):
        text = getattr(getattr(found, "__code__", None), "co_code", b"").hex() or function
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def python_metrics(config: RunConfig) -> list[tuple[str, PythonMetric]]:
    """(task source name, spec) of every task source scored by a Python function."""
    return [(s.name, s.metric) for s in config.task_sources if isinstance(s.metric, PythonMetric)]


def with_metric_hashes(config: RunConfig) -> RunConfig:
    """The config with each Python metric imported and its source hash set: what a new run records and
    fingerprints. InputError (one line) for a function that cannot be imported."""
    if not python_metrics(config):
        return config
    sources = []
    for source in config.task_sources:
        if isinstance(source.metric, PythonMetric):
            metric = source.metric.model_copy(update={"source_hash": source_hash(source.metric.function,
                                                                                 task=source.name)})
            source = source.model_copy(update={"metric": metric})
        sources.append(source)
    return config.model_copy(update={"task_sources": sources})


def check_metric_hashes(config: RunConfig) -> None:
    """A resumed run's Python metrics: importable and unchanged since the run started, else InputError."""
    for task, metric in python_metrics(config):
        now = source_hash(metric.function, task=task)
        if metric.source_hash is not None and now != metric.source_hash:
            raise InputError(
                f"metric function {metric.function!r} of task {task!r} changed since the run started (source hash "
                f"{metric.source_hash}, now {now}): resuming would mix two metrics in one trajectory; put the "
                "function back as it was, or start a new run"
            )
