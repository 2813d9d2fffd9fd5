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
    """A bar per task and one for all tasks; above MAX_TASK_ROWS tasks, the overall bar and one summary line
    (tasks done, steps per task from least to most, the best scores) instead of a bar each."""

    MAX_TASK_ROWS = 30
    SUMMARY_EVERY_S = 0.5  # the summary is recomputed at most this often (rich redraws 10 times a second anyway)

    def __init__(self, *, max_task_rows: int = MAX_TASK_ROWS) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(), console=Console(stderr=True), transient=False,
        )
        self.max_task_rows = max_task_rows
        self.rows: dict[str, int] = {}
        self.steps: dict[str, tuple[int, int]] = {}  # task -> (completed steps, total steps)
        self.best: dict[str, float] = {}
        self.summary: int | None = None
        self._summary_at = -float("inf")
        self.overall = self.progress.add_task("[bold]all tasks", total=0, info="")
        self.progress.start()

    def task_started(self, task: str, *, total_steps: int, done_steps: int) -> None:
        self.steps[task] = (done_steps, total_steps)
        if self.summary is None and len(self.steps) > self.max_task_rows:  # too many for a bar each: summarise
            for row in self.rows.values():
                self.progress.remove_task(row)
            self.rows.clear()
            self.summary = self.progress.add_task("tasks", total=None, info="")
        if self.summary is None:
            self.rows[task] = self.progress.add_task(task, total=total_steps, completed=done_steps, info="starting")
        t = self.progress.tasks[self.overall]
        self.progress.update(self.overall, total=(t.total or 0) + total_steps, completed=t.completed + done_steps)
        self._summarise()

    def step_done(self, task: str, *, step: int, total_steps: int, edit_budget: int, best_score: float,
                  calls: int) -> None:
        self.steps[task] = (step, total_steps)
        self.best[task] = best_score
        if task in self.rows:
            self.progress.update(self.rows[task], completed=step,
                                 info=f"N={edit_budget:<3} best={best_score:.3f} calls={calls}")
        self.progress.advance(self.overall)
        if self.summary is not None:
            self.progress.update(self.overall, info=f"calls={calls}")
        self._summarise()

    def summary_line(self) -> str:
        """`T tasks, D done; steps per task min..max (mean); best eval mean B (lowest L)`."""
        done = sum(1 for s, total in self.steps.values() if s >= total)
        counts = [s for s, _ in self.steps.values()]
        line = (f"{len(self.steps)} tasks, {done} done; steps per task {min(counts)}..{max(counts)} "
                f"(mean {sum(counts) / len(counts):.1f})")
        if self.best:
            scores = list(self.best.values())
            line += f"; best eval mean {sum(scores) / len(scores):.3f} (lowest {min(scores):.3f})"
        return line

    def _summarise(self, *, now: float | None = None) -> None:
        import time

        if self.summary is None:
            return
        now = time.monotonic() if now is None else now
        if now - self._summary_at < self.SUMMARY_EVERY_S:
            return
        self._summary_at = now
        self.progress.update(self.summary, info=self.summary_line())

    def close(self) -> None:
        self._summarise(now=float("inf"))
        self.progress.stop()


def make_progress(mode: str) -> ProgressReporter:
    return RichProgress() if mode == "console" else LogProgress()
