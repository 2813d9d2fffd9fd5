"""Progress display: a rich line per task and an overall bar, JSON log lines, or nothing."""

from __future__ import annotations

from typing import Protocol

import structlog


class ProgressReporter(Protocol):
    def task_started(self, task: str, *, total_steps: int, done_steps: int) -> None: ...
    def step_done(self, task: str, *, step: int, total_steps: int, edit_budget: int, best_score: float,
                  calls: int) -> None: ...
    def close(self) -> None: ...


class LogProgress:
    """Progress as structlog events (JSON-log and quiet modes)."""

    def __init__(self) -> None:
        self.log = structlog.get_logger()

    def task_started(self, task: str, *, total_steps: int, done_steps: int) -> None:
        self.log.info("task_started", task=task, total_steps=total_steps, done_steps=done_steps)

    def step_done(self, task: str, *, step: int, total_steps: int, edit_budget: int, best_score: float,
                  calls: int) -> None:
        self.log.info("progress", task=task, step=step, total_steps=total_steps, edit_budget=edit_budget,
                      best_eval_score=round(best_score, 4), calls=calls)

    def close(self) -> None:
        pass


class RichProgress:
    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False,
        )
        self.rows: dict[str, int] = {}
        self.overall = self.progress.add_task("[bold]all tasks", total=0, info="")
        self.progress.start()

    def task_started(self, task: str, *, total_steps: int, done_steps: int) -> None:
        self.rows[task] = self.progress.add_task(task, total=total_steps, completed=done_steps, info="starting")
        t = self.progress.tasks[self.overall]
        self.progress.update(self.overall, total=(t.total or 0) + total_steps, completed=t.completed + done_steps)

    def step_done(self, task: str, *, step: int, total_steps: int, edit_budget: int, best_score: float,
                  calls: int) -> None:
        self.progress.update(self.rows[task], completed=step,
                             info=f"N={edit_budget:<3} best={best_score:.3f} calls={calls}")
        self.progress.advance(self.overall)

    def close(self) -> None:
        self.progress.stop()


def make_progress(mode: str) -> ProgressReporter:
    return RichProgress() if mode == "console" else LogProgress()
