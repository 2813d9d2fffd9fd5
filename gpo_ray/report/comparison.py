"""A sweep of optimizers (its sub-runs differ in `optimizer.method`) read as the paper's comparison table.

Methods (the grid's variants, each named with its method) as rows, the sweep's task columns and a column per paper
dataset its tasks cover (report/paper_figures.py: BBH's 27 tasks, the lite BBH four, GSM8K, MMLU's 57 subjects, WSC,
WebNLG) as columns, each cell the best prompt's test score as mean ± sample standard deviation over the seeds (a
dataset's: the mean over its tasks, per seed). Beside each paper dataset, the paper's figure for the method: of the
paper's model pair our models are, else of its default pair, the note naming the pair and table of each. Then what
one run of each method costs (calls, optimizer and task-model tokens, wall time) and the points of the efficiency plot
(test score against optimizer tokens: the paper's efficiency argument).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from gpo_ray.report.paper_figures import (
    DATASET_TASK_SETS,
    DATASETS,
    PAPER,
    PAPER_FIGURES,
    PaperFigure,
    dataset_of,
    datasets_covered,
    model_matches,
    paper_figure,
    paper_pair,
)
from gpo_ray.report.plots import ScorePoint, score_against_cost_png
from gpo_ray.report.sweep_view import SubRunView, SweepView, cell, columns_of, mean_spread, run_score


def method_of(run: SubRunView) -> str:
    optimizer = run.run.config.get("optimizer", {}) if run.run is not None else {}
    return str(optimizer.get("method", "gpo")) if isinstance(optimizer, dict) else "gpo"


def models_of(view: SweepView) -> tuple[str, str]:
    """The task model and optimizer that produced the sweep's numbers (the grid's: shared by every sub-run)."""
    config = next((r.run.config for r in view.runs if r.run is not None), {})
    return (str((config.get("task_model") or {}).get("model", "?")),
            str((config.get("optimizer_model") or {}).get("model", "?")))


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


@dataclass(frozen=True)
class Column:
    """One score column: its header, the tasks it averages, and the paper's dataset it is (None: no paper column)."""

    name: str
    tasks: tuple[str, ...]
    dataset: str | None


def score_columns(tasks: Sequence[str]) -> list[Column]:
    """The table's score columns: first each paper dataset the tasks cover that is no task column already, then the
    task columns (one per task, or per family when there are many), each paper dataset's right before its paper
    column. A column that is no paper dataset gets no paper column."""
    groups = {name: tuple(ts) for name, ts in columns_of(tasks).items()}
    covered = datasets_covered(tasks)
    as_column = {name: d for name, ts in groups.items() if (d := dataset_of(ts)) in covered}
    extra = [Column(d if d not in groups else f"{d} (the paper's tasks)", tuple(sorted(DATASETS[d])), d)
             for d in covered if d not in as_column.values()]
    return extra + [Column(name, ts, as_column.get(name)) for name, ts in groups.items()]


def paper_score(figure: PaperFigure | None) -> str:
    """A paper figure as the table shows it: the printed percent / 100, every printed digit kept."""
    return "–" if figure is None else f"{figure.score:.4f}"


def _paper_note(view: SweepView, columns: Sequence[Column], pairs: dict[str, tuple[str, str] | None],
                shown: dict[str, set[str]]) -> str:
    task_model, optimizer_model = models_of(view)
    datasets = [c.dataset for c in columns if c.dataset is not None]
    if not datasets:
        return (f"paper: the sweep's tasks cover no dataset of {PAPER}, so none of its figures is shown; its datasets "
                f"are these task sets: {DATASET_TASK_SETS}")
    parts = []
    for d in datasets:
        pair = pairs[d]
        if not shown[d] or pair is None:
            parts.append(f"{d}: no figure of {PAPER} for these methods")
            continue
        ours = model_matches(task_model, pair[0]) and model_matches(optimizer_model, pair[1])
        which = "ours" if ours else "the paper's default pair: ours is none of its pairs there"
        parts.append(f"{d}: {', '.join(sorted(shown[d]))}, task model / optimizer {pair[0]} / {pair[1]} ({which})")
    return "paper: " + "; ".join(parts)


def comparison(view: SweepView, *, figures: Sequence[PaperFigure] = PAPER_FIGURES) -> Comparison:
    columns_used = score_columns(view.tasks)
    task_model, optimizer_model = models_of(view)
    pairs = {c.dataset: paper_pair(c.dataset, task_model=task_model, optimizer_model=optimizer_model, figures=figures)
             for c in columns_used if c.dataset is not None}
    columns = ["method"]
    for c in columns_used:
        columns += [c.name] + ([f"{c.dataset}: paper"] if c.dataset is not None else [])
    columns.append("mean")
    rows: list[list[str]] = []
    cost_rows: list[list[str]] = []
    points: list[MethodPoint] = []
    shown: dict[str, set[str]] = {d: set() for d in pairs}
    for variant in view.variants:
        runs = view.runs_of(variant)
        method = method_of(runs[0]) if runs else "?"
        label = variant if variant == method else f"{variant} ({method})"
        row = [label]
        for c in columns_used:
            row.append(cell([s for r in runs if (s := run_score(r, c.tasks)) is not None], expected=len(runs)))
            if c.dataset is not None:
                pair = pairs[c.dataset]
                figure = paper_figure(method, c.dataset, pair, figures=figures) if pair is not None else None
                if figure is not None:
                    shown[c.dataset].add(figure.source)
                row.append(paper_score(figure))
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
    note = (f"best prompt's test score, mean ± sample standard deviation over {len(view.seeds)} seed"
            f"{'s' if len(view.seeds) != 1 else ''} (a paper dataset's: the mean over its tasks); ours with task model "
            f"/ optimizer {task_model} / {optimizer_model}; {_paper_note(view, columns_used, pairs, shown)}")
    cost_columns = ["method", "calls / run", "optimizer tokens / run", "task-model tokens / run", "wall s / run"]
    return Comparison(columns, rows, note, cost_columns, cost_rows, points)


def score_vs_tokens_png(points: Sequence[MethodPoint], *, dpi: int = 100) -> bytes:
    """One point per method: mean best test score (error bar: spread over seeds) against optimizer tokens per run."""
    return score_against_cost_png([ScorePoint(p.variant, p.optimizer_tokens, p.score, p.spread) for p in points],
                                  title="best prompt's test score against optimizer tokens per run",
                                  cost_label="optimizer tokens per run", dpi=dpi)
