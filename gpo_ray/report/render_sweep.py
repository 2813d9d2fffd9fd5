"""A sweep's report (`gpo-ray report SWEEP_DIR`): the ablation table first, then the plot of test score against
calls spent per variant, then the sub-runs. Markdown or one self-contained HTML page, escaped like a run's.

A sweep whose sub-runs run different optimizers (`optimizer.method`) opens with the comparison table instead
(report/comparison.py: methods as rows, datasets as columns with the paper's figure beside ours), what each method
costs, and the plot of test score against optimizer tokens; the ablation table follows."""

from __future__ import annotations

import base64
from html import escape

from gpo_ray.report.comparison import comparison, is_comparison, score_vs_tokens_png
from gpo_ray.report.render_html import html_table, page_start
from gpo_ray.report.plots import ScorePoint, score_against_cost_png
from gpo_ray.report.render_md import md_escape, md_table
from gpo_ray.report.sweep_view import (
    SUB_RUN_COLUMNS,
    SweepView,
    VariantPoint,
    ablation_table,
    sub_run_rows,
    sweep_facts,
)


def score_vs_calls_png(points: list[VariantPoint], *, dpi: int = 100) -> bytes:
    """One point per variant: mean best test score (error bar: spread over seeds) against LLM calls per run."""
    return score_against_cost_png([ScorePoint(p.variant, p.calls, p.score, p.spread) for p in points],
                                  title="best prompt's test score against LLM calls per run",
                                  cost_label="LLM calls per run (both roles)", dpi=dpi)


def _comparison_markdown(view: SweepView) -> list[str]:
    c = comparison(view)
    return ["", "## Comparison", "", md_table(c.columns, [list(map(md_escape, r)) for r in c.rows]), "",
            md_escape(c.note) + ".", "", "## Cost per method", "",
            md_table(c.cost_columns, [list(map(md_escape, r)) for r in c.cost_rows]), "",
            "## Test score against optimizer tokens", "",
            md_table(["method", "optimizer tokens / run", "test score", "spread over seeds"],
                     [[md_escape(p.variant), f"{p.optimizer_tokens:,.0f}", "–" if p.score is None else f"{p.score:.3f}",
                       "–" if p.spread is None else f"{p.spread:.3f}"] for p in c.points])]


def render_sweep_markdown(view: SweepView) -> str:
    ablation = ablation_table(view)
    parts = [f"# gpo-ray sweep report: {md_escape(view.path.name)}", ""]
    parts += [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in sweep_facts(view)]
    if is_comparison(view):
        parts += _comparison_markdown(view)
    parts += ["", "## Ablation", "", md_table(ablation.columns, [list(map(md_escape, r)) for r in ablation.rows]),
              "", md_escape(ablation.note) + ".", "", "## Test score against calls", "",
              md_table(["variant", "calls / run", "test score", "spread over seeds"],
                       [[md_escape(p.variant), f"{p.calls:,.0f}", "–" if p.score is None else f"{p.score:.3f}",
                         "–" if p.spread is None else f"{p.spread:.3f}"] for p in ablation.points]),
              "", "## Sub-runs", "", md_table(SUB_RUN_COLUMNS, [list(map(md_escape, r)) for r in sub_run_rows(view)])]
    return "\n".join(parts).rstrip() + "\n"


def _comparison_html(view: SweepView) -> list[str]:
    c = comparison(view)
    plot = base64.b64encode(score_vs_tokens_png(c.points)).decode("ascii")
    alt = "each method's mean best test score, with its spread over seeds, against its optimizer tokens per run"
    return [
        '<section id="comparison"><h2>Comparison</h2>',
        html_table(c.columns, c.rows),
        f'<p class="status">{escape(c.note)}.</p>',
        "</section>",
        '<section id="cost"><h2>Cost per method</h2>',
        html_table(c.cost_columns, c.cost_rows),
        "</section>",
        '<section id="score-vs-tokens"><h2>Test score against optimizer tokens</h2>',
        f'<img class="task-plot" style="max-width: 760px" alt="{escape(alt)}" src="data:image/png;base64,{plot}">',
        "</section>",
    ]


def render_sweep_html(view: SweepView) -> str:
    ablation = ablation_table(view)
    title = f"gpo-ray sweep report: {view.path.name}"
    plot = base64.b64encode(score_vs_calls_png(ablation.points)).decode("ascii")
    alt = "each variant's mean best test score, with its spread over seeds, against its LLM calls per run"
    parts = [
        *page_start(title),
        '<section id="sweep"><dl class="facts">',
        *(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in sweep_facts(view)),
        "</dl></section>",
        *(_comparison_html(view) if is_comparison(view) else []),
        '<section id="ablation"><h2>Ablation</h2>',
        html_table(ablation.columns, ablation.rows),
        f'<p class="status">{escape(ablation.note)}.</p>',
        "</section>",
        '<section id="score-vs-calls"><h2>Test score against calls</h2>',
        f'<img class="task-plot" style="max-width: 760px" alt="{escape(alt)}" src="data:image/png;base64,{plot}">',
        "</section>",
        '<section id="sub-runs"><h2>Sub-runs</h2>',
        html_table(SUB_RUN_COLUMNS, sub_run_rows(view)),
        "</section>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
