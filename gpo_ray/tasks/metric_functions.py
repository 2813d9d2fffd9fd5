"""A Python metric's function: imported by name, its module's source hashed into the run's fingerprint.

The driver imports each function once when a run starts or resumes, so a name that cannot be imported stops the run
before the first LLM call with one line (`InputError`, exit code 2); the evaluator actors import it again to score.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from gpo_ray.config import PythonMetric
from gpo_ray.errors import InputError, error_line

if TYPE_CHECKING:
    from gpo_ray.config import RunConfig


def metric_file(function: str) -> Path | None:
    """The file of a metric given as "path/to/file.py:name" (None for "package.module:name")."""
    module, _, _ = function.rpartition(":")
    return Path(module) if module.endswith(".py") else None


def metric_files(config: RunConfig) -> list[str]:
    """The metric files of a run's tasks, as absolute paths: what the evaluators' runtime_env ships (py_modules)."""
    files = {str(path.resolve()) for _, m in python_metrics(config) if (path := metric_file(m.function)) is not None}
    return sorted(files)


def _import(function: str) -> ModuleType:
    """The function's module. A metric file is imported by its name where Ray's runtime_env shipped it (py_modules
    puts it on the worker's path), else from its path."""
    file = metric_file(function)
    if file is None:
        return importlib.import_module(function.rpartition(":")[0])
    # Kept under a key of its own: a file named like an installed module must not replace it in sys.modules.
    key = f"gpo_ray.metric_file:{file.resolve()}"
    if key in sys.modules:  # imported from its path before (this is asked once per scored example)
        return sys.modules[key]
    try:
        module = importlib.import_module(file.stem)
    except ModuleNotFoundError as e:
        if e.name != file.stem:
            raise
    else:
        if Path(getattr(module, "__file__", "") or "").name == file.name:
            return module
    if not file.is_file():
        raise FileNotFoundError(f"no such file: {file}")
    spec = importlib.util.spec_from_file_location(file.stem, file)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {file}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[key] = module
    return module


def load_metric_function(function: str, *, task: str = "") -> Callable[..., Any]:
    """The callable `function` ("package.module:name" or "path/to/file.py:name") names; InputError when it cannot be
    imported or called."""
    module_name, _, name = function.rpartition(":")
    where = f"metric function {function!r}" + (f" of task {task!r}" if task else "")
    try:
        module = _import(function)
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
    file = metric_file(function)
    if file is not None:
        return hashlib.sha256(file.read_bytes()).hexdigest()[:16]
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
