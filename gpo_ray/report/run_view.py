"""A run directory read back for people: every task's trajectory, scores, usage and timing.

The checkpoints are the truth (they are written before results.json), so a run still in progress, killed
or resumed reads the same way as a finished one; results.json adds what only the end of a task knows (test
scores, the final status). Reading never writes into the run directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.core.results import GradedExample, StepResult
from gpo_ray.core.selection import select_best
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import GpoError, InputError
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import RunStatus

LOG_TAIL_BYTES = 64 * 1024  # the last log events are read from the end of the file, never the whole log


@dataclass(frozen=True)
class Timing:
    """When the run started and last moved, and how long it ran. `source` says where the numbers come from:
    "results" (summed over the first run and its resumes), "log" (first to last log event, pauses included)
    or "unknown"."""

    started_at: str | None = None
    updated_at: str | None = None
    wall_time_s: float | None = None
    source: str = "unknown"


@dataclass(frozen=True)
class TaskView:
    """One task as far as it got. `steps[0]` is the initial prompt; `total_steps` and `schedule` (N(1..T)) are
    None when neither a finished task nor the run's data can tell them."""

    name: str
    status: str  # completed | budget_exhausted | running | stopped | pending
    steps: tuple[StepResult, ...]
    total_steps: int | None = None
    schedule: tuple[int, ...] | None = None
    initial_test_score: float | None = None
    best_test_score: float | None = None
    best_step: int | None = None
    # A metric of the user's own: the best prompt's lowest-scored test examples (results.json lowest_test_examples).
    lowest_test_examples: tuple[GradedExample, ...] = ()

    @property
    def steps_done(self) -> int:
        return max(0, len(self.steps) - 1)

    @property
    def initial(self) -> StepResult | None:
        return self.steps[0] if self.steps else None

    @property
    def best(self) -> StepResult | None:
        if not self.steps:
            return None
        if self.best_step is not None and 0 <= self.best_step < len(self.steps):
            return self.steps[self.best_step]
        entry = select_best([TrajectoryEntry(s.prompt, s.eval_score, s.step) for s in self.steps])
        return self.steps[entry.step]

    def edit_distances(self) -> list[int]:
        """Measured word edit distance of each chosen prompt (steps 1..) to the one before it."""
        return [word_edit_distance(a.prompt, b.prompt) for a, b in zip(self.steps, self.steps[1:])]

    def budgets(self) -> list[int]:
        """N(t) for t = 1..T when the whole schedule is known, else for the steps done."""
        return list(self.schedule) if self.schedule is not None else [s.edit_budget for s in self.steps[1:]]


@dataclass(frozen=True)
class RunView:
    path: Path
    fingerprint: str
    status: str  # from results.json, or "running" / "not started" when it has none yet
    config: dict[str, Any]
    tasks: dict[str, TaskView]
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)  # role -> UsageCounters snapshot
    timing: Timing = Timing()

    @property
    def placement(self) -> str:
        return str(self.config.get("optimizer", {}).get("placement", "end"))

    def placement_of(self, task: str) -> str:
        """Where a task's prompt went: its task source's own placement, else the run's."""
        for source in self.config.get("task_sources") or ():
            if isinstance(source, dict) and source.get("name") == task and source.get("placement"):
                return str(source["placement"])
        return self.placement

    @property
    def candidate_scoring(self) -> str:
        return str(self.config.get("optimizer", {}).get("candidate_scoring", "train_batch"))


def read_run(path: Path | str, *, resolve_data: bool = True) -> RunView:
    """Read a run directory (finished, in progress or resumed). InputError if it holds no readable run.

    resolve_data: also load the run's tasks from its data (best effort) to know total steps and the whole edit
    budget schedule of unfinished tasks, and tasks that have not started yet.
    """
    run_dir = RunDirectory(Path(path))
    meta = _read_config(run_dir)
    fingerprint = str(meta.get("fingerprint", ""))
    config = meta.get("config") if isinstance(meta.get("config"), dict) else {}
    results = _read_json_object(run_dir.results_file)
    entries = results.get("tasks") if isinstance(results.get("tasks"), dict) else {}
    steps = _read_checkpoints(run_dir, fingerprint=fingerprint)
    schedules = _schedules_from_data(config) if resolve_data else {}

    run_status = str(results.get("status") or (RunStatus.RUNNING if steps else "not started"))
    tasks: dict[str, TaskView] = {}
    for name in sorted(set(steps) | set(entries) | set(schedules)):
        entry = entries.get(name) if isinstance(entries.get(name), dict) else {}
        tasks[name] = _task_view(name, steps.get(name, []), entry, schedules.get(name), run_status=run_status)

    usage = _read_json_object(run_dir.usage_file) or results.get("usage") or {}
    usage = {role: u for role, u in usage.items() if isinstance(u, dict)} if isinstance(usage, dict) else {}
    return RunView(path=run_dir.path, fingerprint=fingerprint, status=run_status, config=config, tasks=tasks,
                   usage=usage, timing=_timing(results, run_dir.logs_dir / "driver.jsonl"))


def section_ids(names: list[str]) -> dict[str, str]:
    """A stable, unique HTML id per task name: "bbh/navigate" -> "task-bbh-navigate"."""
    ids: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(names):
        base = "task-" + (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "unnamed")
        candidate, n = base, 2
        while candidate in used:
            candidate, n = f"{base}-{n}", n + 1
        used.add(candidate)
        ids[name] = candidate
    return ids


# reading ------------------------------------------------------------------------------------------------------
def _read_config(run_dir: RunDirectory) -> dict[str, Any]:
    if not run_dir.exists():
        if (run_dir.path / "sweep.json").is_file():
            raise InputError(f"{run_dir.path} is a sweep: its runs are in {run_dir.path / 'runs'} "
                             f"(`gpo-ray report {run_dir.path}` reports the whole sweep)")
        raise InputError(f"{run_dir.path} holds no gpo-ray run (no config.json)")
    try:
        meta = json.loads(run_dir.config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{run_dir.config_file} cannot be read: {getattr(e, 'strerror', None) or type(e).__name__}") \
            from None
    if not isinstance(meta, dict):
        raise InputError(f"{run_dir.config_file} is not a gpo-ray run config")
    return meta


def _read_json_object(path: Path) -> dict[str, Any]:
    """A state file the controller rewrites atomically; missing (run in progress) or unreadable reads as {}."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        structlog.get_logger().warning("report_state_file_unreadable", file=str(path), error=type(e).__name__)
        return {}
    return data if isinstance(data, dict) else {}


def _read_checkpoints(run_dir: RunDirectory, *, fingerprint: str) -> dict[str, list[StepResult]]:
    """Every task's completed steps, named by the task field of the records (file names are sanitized)."""
    out: dict[str, list[StepResult]] = {}
    if not run_dir.checkpoints.is_dir():
        return out
    for path in sorted(run_dir.checkpoints.glob("*.jsonl")):
        name = _task_name_in(path)
        if name is not None:
            out[name] = run_dir.completed_steps(name, fingerprint=fingerprint)
    return out


def _task_name_in(path: Path) -> str | None:
    """The task of a checkpoint file: from its first readable record, so that damage on line 1 is still found
    (and refused) by `completed_steps`. None when no record is readable (only a torn first write)."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    task = json.loads(line).get("task")
                except (ValueError, AttributeError):
                    continue
                if isinstance(task, str):
                    return task
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read checkpoint {path}: {getattr(e, 'strerror', None) or type(e).__name__}") \
            from None
    return None


def _schedules_from_data(config: dict[str, Any]) -> dict[str, tuple[int, ...]]:
    """N(1..T) per task from the run's data; {} when the config or data cannot be loaded here."""
    from gpo_ray.config import RunConfig
    from gpo_ray.core.loop import schedule_for
    from gpo_ray.tasks.registry import resolve_tasks

    try:
        cfg = RunConfig.model_validate(config)
        tasks = resolve_tasks(cfg.tasks, data_dir=cfg.data_dir, sources=cfg.task_sources)
        return {t.name: tuple(schedule_for(t, cfg.optimizer).as_list()) for t in tasks}
    except (GpoError, OSError, ValueError) as e:
        structlog.get_logger().info("report_data_unavailable", error=type(e).__name__)
        return {}


_FINISHED = (RunStatus.COMPLETED, RunStatus.BUDGET_EXHAUSTED)
_ENDED = (RunStatus.STOPPED, *_FINISHED)


def _task_view(name: str, records: list[StepResult], entry: dict[str, Any], schedule: tuple[int, ...] | None, *,
               run_status: str) -> TaskView:
    if not records and entry:  # no checkpoint file: rebuild from results.json
        try:
            first = StepResult(step=0, edit_budget=0, prompt=str(entry["initial_prompt"]),
                               eval_score=float(entry["initial_eval_score"]))
            records = [first, *(StepResult.from_dict(s) for s in entry.get("steps", []))]
        except (KeyError, TypeError, ValueError):
            records = []
    status = str(entry.get("status") or (RunStatus.RUNNING if records else "pending"))
    if status == RunStatus.RUNNING and run_status in _ENDED:
        status = str(RunStatus.STOPPED)  # the run ended without this task finishing
    finished = status in _FINISHED
    total = len(schedule) if schedule is not None else (max(0, len(records) - 1) if status == RunStatus.COMPLETED
                                                        else None)
    best_step = entry.get("best_step") if finished and isinstance(entry.get("best_step"), int) else None
    return TaskView(
        name=name, status=status, steps=tuple(records), total_steps=total, schedule=schedule,
        initial_test_score=_score_or_none(entry.get("initial_test_score")),
        best_test_score=_score_or_none(entry.get("best_test_score")),
        best_step=best_step,
        lowest_test_examples=_graded_examples(entry.get("lowest_test_examples")) if finished else (),
    )


def _graded_examples(raw: Any) -> tuple[GradedExample, ...]:
    """results.json's lowest_test_examples; entries that do not read as one are left out."""
    out = []
    for item in raw if isinstance(raw, list) else []:
        score = _score_or_none(item.get("score")) if isinstance(item, dict) else None
        if score is None:
            continue
        feedback = item.get("feedback")
        out.append(GradedExample(example_id=None if item.get("id") is None else str(item["id"]),
                                 input=str(item.get("input", "")), reply=str(item.get("reply", "")), score=score,
                                 feedback=None if feedback is None else str(feedback)))
    return tuple(out)


def _score_or_none(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else None


# timing ----------------------------------------------------------------------------------------------------------
def _timing(results: dict[str, Any], log_file: Path) -> Timing:
    t = results.get("timing")
    if isinstance(t, dict) and isinstance(t.get("wall_time_s"), (int, float)):
        return Timing(started_at=t.get("started_at"), updated_at=t.get("updated_at"),
                      wall_time_s=float(t["wall_time_s"]), source="results")
    first, last = _log_time_span(log_file)
    if first is None or last is None:
        return Timing()
    return Timing(started_at=first.isoformat(), updated_at=last.isoformat(),
                  wall_time_s=(last - first).total_seconds(), source="log")


def _log_time_span(log_file: Path) -> tuple[datetime | None, datetime | None]:
    try:
        with open(log_file, "rb") as f:
            head = f.read(LOG_TAIL_BYTES)
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - LOG_TAIL_BYTES))
            tail = f.read()
    except OSError:
        return None, None
    firsts = [t for t in map(_timestamp, head.split(b"\n")) if t is not None]
    lasts = [t for t in map(_timestamp, tail.split(b"\n")) if t is not None]
    return (firsts[0] if firsts else None), (lasts[-1] if lasts else None)


def _timestamp(line: bytes) -> datetime | None:
    try:
        stamp = json.loads(line).get("timestamp")
        return datetime.fromisoformat(str(stamp).replace("Z", "+00:00")) if stamp else None
    except (ValueError, AttributeError):
        return None
