"""The live display: a bar per task for a few tasks; one summary line instead of a bar each for many."""

from __future__ import annotations

from gpo_ray.controller.progress import RichProgress


def shown(display: RichProgress) -> list[tuple[str, str]]:
    """The rows the display draws: (description, info)."""
    return [(t.description, t.fields.get("info", "")) for t in display.progress.tasks]


def test_few_tasks_get_a_bar_each() -> None:
    display = RichProgress(max_task_rows=3)
    try:
        for name in ("a", "b"):
            display.task_started(name, total_steps=4, done_steps=0)
        display.step_done("a", step=1, total_steps=4, edit_budget=12, best_score=0.5, calls=10)
        rows = shown(display)
        assert [d for d, _ in rows] == ["[bold]all tasks", "a", "b"]
        assert "best=0.500" in rows[1][1]
    finally:
        display.close()


def test_many_tasks_are_summarised_in_one_line() -> None:
    display = RichProgress(max_task_rows=3)
    try:
        for i in range(1000):
            display.task_started(f"t{i:04d}", total_steps=2, done_steps=1 if i == 0 else 0)
        for i in range(10):
            display.step_done(f"t{i:04d}", step=2 if i == 0 else 1, total_steps=2, edit_budget=8,
                              best_score=0.25 + i / 100, calls=100 + i)
        display._summarise(now=float("inf"))  # the summary is redrawn at most twice a second
        rows = shown(display)
        assert len(rows) == 2, "the overall bar and the summary, no bar per task"
        assert rows[1][1] == ("1000 tasks, 1 done; steps per task 0..2 (mean 0.0); "
                              "best eval mean 0.295 (lowest 0.250)")
        overall = display.progress.tasks[0]
        assert (overall.completed, overall.total) == (1 + 10, 2000)
    finally:
        display.close()
