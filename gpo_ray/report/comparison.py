"""A sweep of optimizers (its sub-runs differ in `optimizer.method`) read as the paper's comparison table.

Methods (the grid's variants, each named with its method) as rows, datasets (the sweep's task columns) as columns,
each cell the best prompt's test score as mean ± sample standard deviation over the seeds, and beside each dataset
the paper's figure where the configuration matches a row of its table (same dataset, same method): see
`PAPER_FIGURES`. Then what one run of each method costs (calls, optimizer and task-model tokens, wall time) and the
points of the efficiency plot (test score against optimizer tokens: the paper's efficiency argument).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gpo_ray.report.plots import ScorePoint, score_against_cost_png
from gpo_ray.report.sweep_view import SubRunView, SweepView, cell, columns_of, mean_spread, run_score

# The paper's figures: (method, dataset) -> (score in [0, 1], the task model / optimizer pair, the source). A figure
# goes here only when read from the paper's text with its table named (arXiv 2402.17564, "Table N"); none could be
# verified from the paper's text when this was written, so the paper column says so rather than show a number.
# A dataset is named as the paper names it: "bbh" (its 27 tasks, averaged), "mmlu", "gsm8k", "wsc", "webnlg".
PAPER = "arXiv 2402.17564"


@dataclass(frozen=True)
class PaperFigure:
    method: str
    dataset: str
    score: float
    models: str  # "task model / optimizer", as the paper ran them
    source: str  # e.g. "arXiv 2402.17564 Table 2"


PAPER_FIGURES: tuple[PaperFigure, ...] = ()
BBH_TASKS = 27


def dataset_of(tasks: Sequence[str]) -> str | None:
    """The paper's dataset a column is, or None: a single-task benchmark, or every task of BBH."""
    if len(tasks) == 1 and tasks[0] in ("gsm8k", "wsc", "webnlg"):
        return tasks[0]
    if len(tasks) == BBH_TASKS and all(t.startswith("bbh/") for t in tasks):
        return "bbh"
    return None


def paper_figure(method: str, tasks: Sequence[str], *, figures: Sequence[PaperFigure] = PAPER_FIGURES
                 ) -> PaperFigure | None:
    dataset = dataset_of(tasks)
    return next((f for f in figures if f.method == method and f.dataset == dataset), None) if dataset else None


def method_of(run: SubRunView) -> str:
    optimizer = run.run.config.get("optimizer", {}) if run.run is not None else {}
    return str(optimizer.get("method", "gpo")) if isinstance(optimizer, dict) else "gpo"


def model_pair(view: SweepView) -> str:
    """The task model and optimizer that produced the sweep's numbers (the grid's: shared by every sub-run)."""
    config = next((r.run.config for r in view.runs if r.run is not None), {})
    task = (config.get("task_model") or {}).get("model", "?")
    optimizer = (config.get("optimizer_model") or {}).get("model", "?")
    return f"{task} / {optimizer}"


def is_comparison(view: SweepView) -> bool:
    """Whether the sweep compares optimizers: its sub-runs run more than one method."""
    return len({method_of(r) for r in view.runs if r.run is not None}) > 1


def _tokens(run: SubRunView, role: str) -> int:
    u = run.run.usage.get(role, {}) if run.run is not None else {}
    return sum(int(u.get(k, 0) or 0) for k in ("prompt_tokens", "completion_tokens", "cache_hit_tokens"))


@dataclass(frozen=True)
class MethodPoint:
    """One method in the efficiency plot."""

    variant: str
    method: str
    optimizer_tokens: float  # mean per run
    score: float | None  # mean best test score over tasks, mean over seeds
    spread: float | None


@dataclass(frozen=True)
class Comparison:
    columns: list[str]
    rows: list[list[str]]
    note: str
    cost_columns: list[str]
    cost_rows: list[list[str]]
    points: list[MethodPoint]


def comparison(view: SweepView, *, figures: Sequence[PaperFigure] = PAPER_FIGURES) -> Comparison:
    groups = columns_of(view.tasks)
    pair = model_pair(view)
    columns = ["method"]
    for name in groups:
        columns += [name, f"{name}: paper"]
    columns.append("mean")
    rows: list[list[str]] = []
    cost_rows: list[list[str]] = []
    points: list[MethodPoint] = []
    sources: set[str] = set()
    for variant in view.variants:
        runs = view.runs_of(variant)
        method = method_of(runs[0]) if runs else "?"
        label = variant if variant == method else f"{variant} ({method})"
        row = [label]
        for tasks in groups.values():
            row.append(cell([s for r in runs if (s := run_score(r, tasks)) is not None], expected=len(runs)))
            figure = paper_figure(method, tasks, figures=figures)
            if figure is not None:
                sources.add(f"{figure.source} ({figure.models})")
            row.append("–" if figure is None else f"{figure.score:.3f}")
        overall = [s for r in runs if (s := run_score(r, view.tasks)) is not None]
        row.append(cell(overall, expected=len(runs)))
        rows.append(row)
        m, sd = mean_spread(overall)
        opt_tokens = statistics.fmean(_tokens(r, "optimizer") for r in runs) if runs else 0.0
        walls = [r.run.timing.wall_time_s for r in runs if r.run is not None and r.run.timing.wall_time_s is not None]
        cost_rows.append([label, f"{statistics.fmean(r.calls for r in runs):,.0f}" if runs else "–",
                          f"{opt_tokens:,.0f}",
                          f"{statistics.fmean(_tokens(r, 'task_model') for r in runs):,.0f}" if runs else "–",
                          f"{statistics.fmean(walls):.1f}" if walls else "–"])
        points.append(MethodPoint(variant=variant, method=method, optimizer_tokens=opt_tokens, score=m, spread=sd))
    paper_note = ("paper: " + "; ".join(sorted(sources))) if sources else (
        f"paper: no figure of {PAPER} matches this configuration (the paper reports BBH as the mean of its "
        f"{BBH_TASKS} tasks, and a figure is shown only where read from its table)")
    note = (f"best prompt's test score, mean ± sample standard deviation over {len(view.seeds)} seed"
            f"{'s' if len(view.seeds) != 1 else ''}; ours with task model / optimizer {pair}; {paper_note}")
    cost_columns = ["method", "calls / run", "optimizer tokens / run", "task-model tokens / run", "wall s / run"]
    return Comparison(columns, rows, note, cost_columns, cost_rows, points)


def score_vs_tokens_png(points: Sequence[MethodPoint], *, dpi: int = 100) -> bytes:
    """One point per method: mean best test score (error bar: spread over seeds) against optimizer tokens per run."""
    return score_against_cost_png([ScorePoint(p.variant, p.optimizer_tokens, p.score, p.spread) for p in points],
                                  title="best prompt's test score against optimizer tokens per run",
                                  cost_label="optimizer tokens per run", dpi=dpi)
