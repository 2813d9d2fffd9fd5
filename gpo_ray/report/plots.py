"""One PNG per task: chosen prompt's score, candidates' score spread, edit budget vs measured edit distance; and a
sweep's score-against-cost scatter (variants against calls, methods against optimizer tokens).

Figures are made with matplotlib's object API on the Agg canvas (no pyplot, so no global figure registry to
leak or to close, and no display needed); one figure with three panels per task keeps a 27-task report fast.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from matplotlib.figure import Figure

from collections.abc import Sequence

from gpo_ray.report.run_view import TaskView

CANDIDATE_LABELS = {"train_batch": "candidate scores (training batch)", "eval": "candidate scores (eval split)"}


def task_plot_png(task: TaskView, *, candidate_scoring: str = "train_batch", dpi: int = 100) -> bytes:
    """The task's three panels as PNG bytes. The task must have at least its initial step."""
    fig = Figure(figsize=(12, 3.4), dpi=dpi)
    fig.subplots_adjust(left=0.05, right=0.99, bottom=0.15, top=0.9, wspace=0.22)
    scores, spread, edits = fig.subplots(1, 3)
    _score_panel(scores, task)
    _spread_panel(spread, task, title=CANDIDATE_LABELS.get(candidate_scoring, "candidate scores"))
    _edit_panel(edits, task)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def _step_axis(ax, last: int) -> None:
    ax.set_xlabel("step")
    ax.set_xlim(-0.5, max(last, 1) + 0.5)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3)


def _score_panel(ax, task: TaskView) -> None:
    xs = [s.step for s in task.steps]
    ax.plot(xs, [s.eval_score for s in task.steps], marker="o", color="tab:blue", label="eval (chosen prompt)")
    best = task.best
    if task.initial_test_score is not None:
        ax.plot([0], [task.initial_test_score], "s", color="tab:orange", markersize=9, label="test (initial)")
    if task.best_test_score is not None and best is not None:
        ax.plot([best.step], [task.best_test_score], "*", color="tab:red", markersize=14, label="test (best)")
    if best is not None:
        ax.axvline(best.step, color="tab:green", alpha=0.4, linestyle="--", label=f"best step {best.step}")
    ax.set_title("chosen prompt score")
    ax.set_ylabel("score")
    ax.set_ylim(-0.03, 1.03)
    _step_axis(ax, task.total_steps or xs[-1])
    ax.legend(loc="best", fontsize=8, framealpha=0.8)  # weak runs sit low, strong ones high


def _spread_panel(ax, task: TaskView, *, title: str) -> None:
    with_candidates = [s for s in task.steps[1:] if s.candidates]
    if with_candidates:
        data = [[c.score for c in s.candidates] for s in with_candidates]
        positions = [s.step for s in with_candidates]
        ax.boxplot(data, positions=positions, widths=0.5, showfliers=False, manage_ticks=False)
        for x, ys in zip(positions, data):
            # Spread the points evenly across the box, not randomly: the same run always draws the same picture.
            offsets = [0.0] if len(ys) == 1 else [-0.18 + 0.36 * i / (len(ys) - 1) for i in range(len(ys))]
            ax.scatter([x + o for o in offsets], ys, s=12, alpha=0.6, color="tab:purple", zorder=3)
    else:
        ax.text(0.5, 0.5, "no candidates yet", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_title(title)
    ax.set_ylim(-0.03, 1.03)
    _step_axis(ax, task.total_steps or task.steps[-1].step)


def _edit_panel(ax, task: TaskView) -> None:
    budgets = task.budgets()
    distances = task.edit_distances()
    if budgets:
        ax.step(range(1, len(budgets) + 1), budgets, where="mid", color="tab:gray", label="edit budget N(t)")
    if distances:
        ax.bar(range(1, len(distances) + 1), distances, width=0.5, color="tab:cyan", alpha=0.8,
               label="measured word edit distance")
    ax.set_title("edit budget vs. chosen prompt's edit")
    ax.set_ylabel("words")
    ax.set_ylim(bottom=0)
    _step_axis(ax, task.total_steps or task.steps[-1].step)
    if budgets or distances:
        ax.legend(loc="best", fontsize=8)


@dataclass(frozen=True)
class ScorePoint:
    """One variant or method of a sweep: its cost per run and its mean best test score (None: not scored yet)."""

    label: str
    cost: float
    score: float | None
    spread: float | None


def score_against_cost_png(points: Sequence[ScorePoint], *, title: str, cost_label: str, dpi: int = 100) -> bytes:
    """One point per variant: mean best test score (error bar: spread over seeds) against its cost per run, from
    zero, so how far apart the costs are reads true."""
    fig = Figure(figsize=(7, 4.2), dpi=dpi)
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.13, top=0.9)
    ax = fig.subplots()
    shown = [p for p in points if p.score is not None]
    for i, p in enumerate(shown):
        ax.errorbar([p.cost], [p.score], yerr=[p.spread or 0.0], fmt="o", color=f"C{i % 10}", capsize=4,
                    markersize=7, label=p.label)
    if not shown:
        ax.text(0.5, 0.5, "no test scores yet", ha="center", va="center", transform=ax.transAxes, color="gray")
    ax.set_title(title)
    ax.set_xlabel(cost_label)
    ax.set_ylabel("test score (mean over tasks and seeds)")
    ax.grid(alpha=0.3)
    if shown:
        ax.set_xlim(0, max(p.cost for p in shown) * 1.1 or 1)
        ax.legend(loc="best", fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
