"""The report as markdown: the same tables as the HTML page, the per-step numbers in place of the plots (a
markdown file cannot carry its images inline everywhere it is read), prompts verbatim in code fences and the
word diff as ~~deleted~~ / **inserted** words. Run text is escaped so it cannot become markup or raw HTML."""

from __future__ import annotations

import re
from collections.abc import Sequence

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

_INLINE_MARKUP = re.compile(r"([\\`*_\[\]|~])")  # emphasis, code, links, tables, strike-through
_LINE_START_MARKUP = re.compile(r"^(\d*)([#+=.)-])(?=\s|$)")  # headings, lists, setext underlines at a line's start


def md_escape(text: str) -> str:
    """Plain text for a markdown paragraph or table cell: no markup, no raw HTML, one line."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = " ".join(_INLINE_MARKUP.sub(r"\\\1", text).split())
    return _LINE_START_MARKUP.sub(r"\1\\\2", text)


def code_block(text: str) -> str:
    """text verbatim in a fence longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


def diff_markdown(old: str, new: str) -> str:
    out = []
    for piece in word_diff(old, new):
        text = md_escape(piece.text)
        out.append(text if piece.op == "equal" else f"~~{text}~~" if piece.op == "delete" else f"**{text}**")
    return " ".join(out) if out else "_(both prompts are empty)_"


def render_markdown(run: RunView) -> str:
    ids = section_ids(list(run.tasks))
    parts = [f"# gpo-ray report: {md_escape(run.path.name)}", ""]
    parts += [f"- **{md_escape(k)}**: {md_escape(v)}" for k, v in run_facts(run)]
    parts += ["", "## Tasks", ""]
    if run.tasks:
        rows = [[f"[{md_escape(r[0])}](#{ids[r[0]]})", *map(md_escape, r[1:])]
                for r in (task_row(t) for t in run.tasks.values())]
        parts.append(md_table(TASK_COLUMNS, rows))
    else:
        parts.append("No task has started yet.")
    parts += ["", "## Usage", ""]
    parts.append(md_table(USAGE_COLUMNS, [list(map(md_escape, r)) for r in usage_rows(run)]) if run.usage
                 else "No usage recorded yet.")
    if endpoint_rows(run):
        parts += ["", "Endpoints of roles with several:", "",
                  md_table(ENDPOINT_COLUMNS, [list(map(md_escape, r)) for r in endpoint_rows(run)])]
    if concurrency_rows(run):
        parts += ["", f"{CONCURRENCY_HEADING}:", "",
                  md_table(CONCURRENCY_COLUMNS, [list(map(md_escape, r)) for r in concurrency_rows(run)])]
    for name, task in run.tasks.items():
        parts += ["", _task_section(task, section_id=ids[name])]
    return "\n".join(parts).rstrip() + "\n"


def _task_section(task: TaskView, *, section_id: str) -> str:
    out = [f'<a id="{section_id}"></a>', "", f"## {md_escape(task.name)}", "",
           f"Status {md_escape(task.status)}, steps {md_escape(steps_progress(task))}."]
    initial, best = task.initial, task.best
    if initial is None or best is None:
        return "\n".join([*out, "", "No step completed yet."])
    out += [
        "",
        f"**Initial prompt** (step 0, eval {score(initial.eval_score)}, test {score(task.initial_test_score)}):",
        "", code_block(initial.prompt), "",
        f"**Best prompt** (step {best.step}, eval {score(best.eval_score)}, test {score(task.best_test_score)}):",
        "", code_block(best.prompt), "",
        "**Word diff, initial → best:**", "",
        diff_markdown(initial.prompt, best.prompt), "",
        "**Steps:**", "",
        md_table(STEP_COLUMNS, [list(map(md_escape, r)) for r in step_rows(task)]),
    ]
    if task.lowest_test_examples:
        out += ["", f"**{GRADED_HEADING}:**", "",
                md_table(GRADED_COLUMNS, [list(map(md_escape, r)) for r in graded_rows(task)])]
    return "\n".join(out)


def md_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells must already be escaped."""
    lines = ["| " + " | ".join(md_escape(c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
