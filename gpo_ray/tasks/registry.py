"""Task names -> loaded tasks.

A run names its tasks the way the paper does (`bbh/navigate`, `mmlu/*`, `gsm8k`, `wsc`, `webnlg`),
plus the small example tasks shipped in the package (`example/arithmetic`) and the user's own
`task_sources`. Names and globs resolve against what is actually on disk, so a typo fails at once
with a list of names that do exist instead of after a cluster has started.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import re
from collections.abc import Callable, Sequence
from pathlib import Path

from gpo_ray.config import TaskSource
from gpo_ray.errors import DataError
from gpo_ray.tasks.loaders import (
    EXAMPLE_PREFIX,
    EXAMPLES_DIR,
    load_bbh_json,
    load_gpo_folder,
    load_table_source,
)
from gpo_ray.tasks.types import Task

# Single-task benchmarks: name -> folder under data_dir.
_SINGLE_DATA_TASKS = {
    "gsm8k": Path("reasoning", "GSM8K"),
    "wsc": Path("common-nlp", "WSC"),
    "webnlg": Path("common-nlp", "WebNLG"),
}
# Families of tasks: name prefix -> folder under data_dir holding one folder per task.
_DATA_FAMILIES = {
    "bbh/": Path("BIG-Bench-Hard"),
    "mmlu/": Path("MMLU"),
}
TaskLoader = Callable[[], Task]
_DATA_DIR_HELP = "set data_dir or --data-dir to the folder holding BIG-Bench-Hard/, MMLU/, reasoning/, common-nlp/"


def available_task_names(*, data_dir: Path | None, sources: Sequence[TaskSource] = ()) -> list[str]:
    """Every name `resolve_tasks` accepts right now, sorted."""
    return sorted(_catalog(data_dir=data_dir, sources=sources))


def resolve_tasks(
    patterns: Sequence[str],
    *,
    data_dir: Path | None,
    sources: Sequence[TaskSource] = (),
) -> list[Task]:
    """Names or fnmatch globs -> loaded tasks, sorted by name and de-duplicated."""
    catalog = _catalog(data_dir=data_dir, sources=sources)
    names = sorted(catalog)
    chosen: set[str] = set()
    for raw in patterns:
        pattern = raw.strip()
        if not pattern:
            raise DataError("empty task name")
        if _is_glob(pattern):
            matched = fnmatch.filter(names, pattern)
            if not matched:
                raise DataError(_no_match_message(pattern, names=names, data_dir=data_dir))
            chosen.update(matched)
        elif pattern in catalog:
            chosen.add(pattern)
        else:
            raise DataError(_unknown_message(pattern, names=names, data_dir=data_dir))
    return [catalog[name]() for name in sorted(chosen)]


def _catalog(*, data_dir: Path | None, sources: Sequence[TaskSource]) -> dict[str, TaskLoader]:
    """name -> zero-argument loader. Loading is deferred so listing names reads no data."""
    catalog: dict[str, TaskLoader] = {}
    for name, path in _example_tasks().items():
        catalog[name] = _folder_loader(path, name)
    if data_dir is not None:
        for name, path in _data_tasks(data_dir).items():
            catalog[name] = _folder_loader(path, name)
    seen: set[str] = set()
    for source in sources:
        if source.name in seen:
            raise DataError(f"two task_sources are named '{source.name}'; names must be unique")
        seen.add(source.name)
        catalog[source.name] = _source_loader(source)  # the user's own task wins over a built-in name
    return catalog


def _folder_loader(path: Path, name: str) -> TaskLoader:
    return lambda: load_gpo_folder(path, name=name)


def _source_loader(source: TaskSource) -> TaskLoader:
    if source.format in ("jsonl", "csv", "parquet", "hf"):
        return lambda: load_table_source(source)
    if source.format == "bbh_json":
        return lambda: _with_placement(load_bbh_json(source), source)
    return lambda: _with_placement(load_gpo_folder(source.path, name=source.name, metric=source.metric), source)


def _with_placement(task: Task, source: TaskSource) -> Task:
    return task if source.placement is None else dataclasses.replace(task, placement=source.placement)


def _example_tasks() -> dict[str, Path]:
    if not EXAMPLES_DIR.is_dir():
        return {}
    return {
        f"{EXAMPLE_PREFIX}{d.name}": d
        for d in sorted(EXAMPLES_DIR.iterdir())
        if d.is_dir() and (d / "meta.json").is_file()
    }


def _data_tasks(data_dir: Path) -> dict[str, Path]:
    if not data_dir.is_dir():
        raise DataError(f"data_dir not found: {data_dir}")
    tasks: dict[str, Path] = {}
    for prefix, folder in _DATA_FAMILIES.items():
        family = data_dir / folder
        if family.is_dir():
            for d in sorted(family.iterdir()):
                if d.is_dir():
                    tasks[f"{prefix}{d.name}"] = d
    for name, folder in _SINGLE_DATA_TASKS.items():
        if (data_dir / folder).is_dir():
            tasks[name] = data_dir / folder
    return tasks


def _is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def _is_data_name(pattern: str) -> bool:
    return pattern in _SINGLE_DATA_TASKS or any(pattern.startswith(p) for p in _DATA_FAMILIES)


def _some_names(names: Sequence[str], *, near: str, limit: int = 8) -> str:
    """Close matches for a typo, else names sharing the pattern's literal prefix, else the first few."""
    if not names:
        return "no tasks are available"
    literal = re.split(r"[*?\[]", near, maxsplit=1)[0]
    close = [] if _is_glob(near) else difflib.get_close_matches(near, names, n=4, cutoff=0.6)
    if close:
        return f"did you mean: {', '.join(close)}"
    family = literal[: literal.rfind("/") + 1]  # "mmlu/foo*" -> show the mmlu/ names
    pool = next(
        (hits for prefix in (literal, family) if prefix and (hits := [n for n in names if n.startswith(prefix)])),
        list(names),
    )
    more = f" ... ({len(pool)} in all)" if len(pool) > limit else ""
    return f"available: {', '.join(pool[:limit])}{more}"


def _unknown_message(pattern: str, *, names: Sequence[str], data_dir: Path | None) -> str:
    if _is_data_name(pattern) and data_dir is None:
        return f"task '{pattern}' is one of the paper's benchmarks and needs data_dir ({_DATA_DIR_HELP})"
    where = ""
    folder = _data_folder(pattern)
    if data_dir is not None and folder is not None:
        where = f" (no folder {data_dir / folder})"
    return f"unknown task '{pattern}'{where}; {_some_names(names, near=pattern)}"


def _no_match_message(pattern: str, *, names: Sequence[str], data_dir: Path | None) -> str:
    hint = ""
    if data_dir is None and (_is_data_name(pattern) or pattern[0] in "*?["):
        hint = f" (no data_dir is set, so the paper's benchmarks are not available: {_DATA_DIR_HELP})"
    return f"no task matches '{pattern}'{hint}; {_some_names(names, near=pattern)}"


def _data_folder(pattern: str) -> Path | None:
    """Where a benchmark name would live under data_dir (None for other names)."""
    for prefix, folder in _DATA_FAMILIES.items():
        if pattern.startswith(prefix):
            return folder / pattern[len(prefix) :]
    return _SINGLE_DATA_TASKS.get(pattern)
