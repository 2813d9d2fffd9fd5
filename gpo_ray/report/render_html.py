"""The report as one self-contained HTML page: plots inlined as base64 PNG data URIs, no script, no external
resource (the Content-Security-Policy forbids any), and every piece of run text escaped, because prompts and
task names are user and LLM text."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from html import escape

from gpo_ray.report.run_view import RunView, TaskView, section_ids
from gpo_ray.report.tables import (
    CONCURRENCY_COLUMNS,
    CONCURRENCY_HEADING,
    ENDPOINT_COLUMNS,
    GRADED_COLUMNS,
    GRADED_HEADING,
    STEP_COLUMNS,
    TASK_COLUMNS,
    USAGE_COLUMNS,
    concurrency_rows,
    endpoint_rows,
    graded_rows,
    run_facts,
    score,
    step_rows,
    steps_progress,
    task_row,
    usage_rows,
)
from gpo_ray.report.word_diff import word_diff

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
STYLE = """
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 1240px; padding: 16px 24px; color: #222; }
h1 { margin-bottom: 4px; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 4px; margin-top: 36px; }
table { border-collapse: collapse; margin: 8px 0 16px; font-size: 14px; }
th, td { border: 1px solid #ddd; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 16px; font-size: 14px; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
img.task-plot { width: 100%; max-width: 1200px; height: auto; display: block; }
.prompts { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.prompt pre, .diff { white-space: pre-wrap; word-break: break-word; background: #f8f8f8; border: 1px solid #e4e4e4;
  padding: 8px; margin: 4px 0; font-family: ui-monospace, monospace; font-size: 13px; }
del { background: #ffd7d5; color: #82071e; } ins { background: #ccffd8; color: #055d20; text-decoration: none; }
.status { font-size: 14px; color: #555; }
"""


def page_start(title: str) -> list[str]:
    """A report page's head (its content-security policy and style) and its title: a run's and a sweep's."""
    return [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
    ]


def render_html(run: RunView) -> str:
    """The whole page as a string."""
    from gpo_ray.report.plots import (
        task_plot_png,  # matplotlib only when a page is drawn
    )

    ids = section_ids(list(run.tasks))
    title = f"gpo-ray report: {run.path.name}"
    parts = [
        *page_start(title),
        '<section id="run"><dl class="facts">',
        *(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in run_facts(run)),
        "</dl></section>",
        '<section id="tasks"><h2>Tasks</h2>',
        html_table(TASK_COLUMNS, [task_row(t) for t in run.tasks.values()],
               link={t: ids[t] for t in run.tasks}) if run.tasks else "<p>No task has started yet.</p>",
        "</section>",
        '<section id="usage"><h2>Usage</h2>',
        html_table(USAGE_COLUMNS, usage_rows(run)) if run.usage else "<p>No usage recorded yet.</p>",
        *(["<h3>Endpoints of roles with several</h3>", html_table(ENDPOINT_COLUMNS, endpoint_rows(run))]
          if endpoint_rows(run) else []),
        *([f"<h3>{escape(CONCURRENCY_HEADING)}</h3>", html_table(CONCURRENCY_COLUMNS, concurrency_rows(run))]
          if concurrency_rows(run) else []),
        "</section>",
    ]
    for name, task in run.tasks.items():
        plot = task_plot_png(task, candidate_scoring=run.candidate_scoring) if task.steps else None
        parts.append(_task_section(task, section_id=ids[name], plot=plot))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _task_section(task: TaskView, *, section_id: str, plot: bytes | None) -> str:
    name = escape(task.name)
    out = [f'<section class="task" id="{section_id}">', f"<h2>{name}</h2>",
           f'<p class="status">status {escape(task.status)}, steps {escape(steps_progress(task))}</p>']
    if plot is None:
        out += ["<p>No step completed yet.</p>", "</section>"]
        return "\n".join(out)
    alt = (f"{task.name}: chosen prompt's eval score per step with test scores of the initial and best prompt; "
           "candidates' score spread per step; edit budget per step next to the measured word edit distance")
    out.append(f'<img class="task-plot" alt="{escape(alt)}" src="data:image/png;base64,'
               f'{base64.b64encode(plot).decode("ascii")}">')
    initial, best = task.initial, task.best
    assert initial is not None and best is not None
    out += [
        '<div class="prompts">',
        _prompt_box("initial prompt", initial.prompt, eval_score=initial.eval_score, test=task.initial_test_score,
                    step=0),
        _prompt_box("best prompt", best.prompt, eval_score=best.eval_score, test=task.best_test_score, step=best.step),
        "</div>",
        "<h3>Word diff, initial → best</h3>",
        f'<div class="diff">{diff_html(initial.prompt, best.prompt)}</div>',
        "<details><summary>Steps</summary>",
        html_table(STEP_COLUMNS, step_rows(task)),
        "</details>",
    ]
    if task.lowest_test_examples:
        out += [f"<h3>{escape(GRADED_HEADING)}</h3>", html_table(GRADED_COLUMNS, graded_rows(task))]
    out.append("</section>")
    return "\n".join(out)


def _prompt_box(label: str, prompt: str, *, eval_score: float, test: float | None, step: int) -> str:
    return (f'<div class="prompt"><h3>{escape(label)} <small>(step {step}, eval {score(eval_score)}, '
            f"test {score(test)})</small></h3><pre>{escape(prompt)}</pre></div>")


def diff_html(old: str, new: str) -> str:
    """initial → best as escaped words in <del>/<ins>."""
    tags = {"delete": "del", "insert": "ins"}
    out = []
    for piece in word_diff(old, new):
        text = escape(piece.text)
        out.append(text if piece.op == "equal" else f"<{tags[piece.op]}>{text}</{tags[piece.op]}>")
    return " ".join(out) if out else "<em>(both prompts are empty)</em>"


def html_table(columns: Sequence[str], rows: Sequence[Sequence[str]], *, link: dict[str, str] | None = None) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = escape(cell)
            if i == 0 and link and cell in link:
                text = f'<a href="#{link[cell]}">{text}</a>'
            numeric = i > 0 and (cell[:1].isdigit() or cell[:1] in "+-–")
            cells.append(f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
