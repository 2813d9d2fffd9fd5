"""A sweep directory read back: every sub-run as a RunView, and the ablation table made of them.

The ablation table is the paper's: variants as rows, tasks (or task families, when there are many tasks) as
columns, each cell the best prompt's test score as mean ± sample standard deviation over the seeds, then what a run
of the variant costs: the LLM calls and tokens it asked for (whether the endpoint or the shared response cache
answered them: what it costs alone) and the requests it sent to the endpoint in this sweep (after the cache, which
depends on which variant asked first). Reading never writes into the sweep directory.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.errors import InputError
from gpo_ray.report.run_view import RunView, read_run
from gpo_ray.runtime.sweep_dir import SweepDirectory

# More tasks than this, and some share a family (bbh/...): one column per family, the mean of its tasks.
MAX_TASK_COLUMNS = 6


@dataclass(frozen=True)
class SubRunView:
    name: str
    variant: str
    seed: int
    run: RunView | None  # None: its directory cannot be read (see `problem`)
    problem: str = ""

    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else "unreadable"

    def best_test(self, task: str) -> float | None:
        t = self.run.tasks.get(task) if self.run is not None else None
        return t.best_test_score if t is not None else None

    def usage_total(self, key: str) -> int:
        if self.run is None:
            return 0
        return sum(int(u.get(key, 0) or 0) for u in self.run.usage.values())

    @property
    def calls(self) -> int:
        """LLM calls the sub-run asked for, answered by the endpoint or the cache."""
        return self.usage_total("calls")

    @property
    def tokens(self) -> int:
        """Tokens of those calls: sent now, or paid earlier by a request the cache kept."""
        return self.usage_total("prompt_tokens") + self.usage_total("completion_tokens") + \
            self.usage_total("cache_hit_tokens")

    @property
    def requests(self) -> int:
        """Requests the sub-run sent to the endpoint (retries included)."""
        return self.usage_total("requests")


@dataclass(frozen=True)
class SweepView:
    path: Path
    fingerprint: str
    grid: dict[str, Any]
    variants: list[str]  # grid order
    seeds: list[int]
    tasks: list[str]
    runs: list[SubRunView]

    def runs_of(self, variant: str) -> list[SubRunView]:
        return [r for r in self.runs if r.variant == variant]

    @property
    def status(self) -> str:
        statuses = {r.status for r in self.runs}
        return statuses.pop() if len(statuses) == 1 else "mixed: " + ", ".join(sorted(statuses))


def read_sweep(path: Path | str) -> SweepView:
    directory = SweepDirectory(Path(path))
    data = directory.read()
    runs: list[SubRunView] = []
    for entry in directory.entries():
        try:
            view = read_run(directory.run_dir(entry.name).path, resolve_data=False)
            runs.append(SubRunView(entry.name, entry.variant, entry.seed, view))
        except InputError as e:
            runs.append(SubRunView(entry.name, entry.variant, entry.seed, None, problem=str(e)))
    variants = list(dict.fromkeys(r.variant for r in runs))
    seeds = list(dict.fromkeys(r.seed for r in runs))
    tasks = sorted({t for r in runs if r.run is not None for t in r.run.tasks})
    return SweepView(path=directory.path, fingerprint=str(data.get("fingerprint", "")),
                     grid=data.get("grid") if isinstance(data.get("grid"), dict) else {},
                     variants=variants, seeds=seeds, tasks=tasks, runs=runs)


def family(task: str) -> str:
    return task.split("/", 1)[0] if "/" in task else task


def columns_of(tasks: Sequence[str]) -> dict[str, list[str]]:
    """Column name -> the tasks it averages: one per task, or one per family when there are many tasks."""
    families: dict[str, list[str]] = {}
    for t in tasks:
        families.setdefault(family(t), []).append(t)
    if len(tasks) > MAX_TASK_COLUMNS and len(families) < len(tasks):
        return families
    return {t: [t] for t in tasks}


def mean_spread(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None with fewer than two values)."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def cell(values: Sequence[float], *, expected: int) -> str:
    m, s = mean_spread(values)
    if m is None:
        return "–"
    text = f"{m:.3f}" + (f" ± {s:.3f}" if s is not None else "")
    return text + (f" ({len(values)}/{expected} seeds)" if len(values) < expected else "")


def run_score(run: SubRunView, tasks: Sequence[str]) -> float | None:
    """The mean best test score of a run over `tasks`; None unless every one of them has one."""
    scores = [run.best_test(t) for t in tasks]
    return statistics.fmean(scores) if scores and all(s is not None for s in scores) else None  # type: ignore[arg-type]


@dataclass(frozen=True)
class VariantPoint:
    """One variant in the score-against-calls plot."""

    variant: str
    calls: float  # mean LLM calls per run
    score: float | None  # mean best test score over tasks, mean over seeds
    spread: float | None  # its sample standard deviation over seeds


@dataclass(frozen=True)
class Ablation:
    columns: list[str]
    rows: list[list[str]]
    note: str
    points: list[VariantPoint]


def ablation_table(view: SweepView) -> Ablation:
    groups = columns_of(view.tasks)
    columns = ["variant", *groups, "mean", "calls / run", "tokens / run", "endpoint requests / run", "runs done"]
    rows: list[list[str]] = []
    points: list[VariantPoint] = []
    for variant in view.variants:
        runs = view.runs_of(variant)
        cells = []
        for tasks in groups.values():
            values = [s for r in runs if (s := run_score(r, tasks)) is not None]
            cells.append(cell(values, expected=len(runs)))
        overall = [s for r in runs if (s := run_score(r, view.tasks)) is not None]
        m, sd = mean_spread(overall)
        calls = statistics.fmean(r.calls for r in runs) if runs else 0.0
        done = sum(r.status == "completed" for r in runs)
        rows.append([variant, *cells, cell(overall, expected=len(runs)), f"{calls:,.0f}",
                     f"{statistics.fmean(r.tokens for r in runs):,.0f}" if runs else "–",
                     f"{statistics.fmean(r.requests for r in runs):,.0f}" if runs else "–", f"{done}/{len(runs)}"])
        points.append(VariantPoint(variant=variant, calls=calls, score=m, spread=sd))
    family_note = " (columns are task families: the mean of their tasks)" if any(
        len(t) > 1 for t in groups.values()) else ""
    note = (f"best prompt's test score, mean ± sample standard deviation over {len(view.seeds)} seed"
            f"{'s' if len(view.seeds) != 1 else ''}{family_note}; calls and tokens: what one run of the variant asked "
            "for (as if it ran alone); endpoint requests: what it sent in this sweep, after the shared response cache")
    return Ablation(columns=columns, rows=rows, note=note, points=points)


def sweep_facts(view: SweepView) -> list[tuple[str, str]]:
    asked = sum(r.calls for r in view.runs)
    sent = sum(r.requests for r in view.runs)
    return [
        ("sweep directory", str(view.path)),
        ("status", view.status),
        ("fingerprint", view.fingerprint or "–"),
        ("variants", ", ".join(view.variants)),
        ("seeds", ", ".join(map(str, view.seeds))),
        ("tasks", ", ".join(view.tasks) or "–"),
        ("sub-runs", f"{len(view.runs)} in {view.path / 'runs'} (each a run directory `gpo-ray report` reads)"),
        ("LLM calls", f"{asked:,} asked by the sub-runs, {sent:,} requests sent to the endpoints "
                      "(the rest answered by the shared response cache)"),
    ]


def sub_run_rows(view: SweepView) -> list[list[str]]:
    rows = []
    for r in view.runs:
        wall = r.run.timing.wall_time_s if r.run is not None else None
        rows.append([r.name, r.variant, str(r.seed), r.status, f"{r.calls:,}", f"{r.requests:,}",
                     "–" if wall is None else f"{wall:.1f}", r.problem or f"runs/{r.name}"])
    return rows


SUB_RUN_COLUMNS = ("sub-run", "variant", "seed", "status", "calls", "endpoint requests", "wall s", "directory")
