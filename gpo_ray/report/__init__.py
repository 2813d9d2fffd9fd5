"""Reading a run back: the HTML/markdown report (`gpo-ray report`) and the best-prompt export (`gpo-ray export`).

    from gpo_ray.report import read_run, render_html, load_best_prompts
    run = read_run("runs/my-run")            # works while the run is still going
    html = render_html(run)                  # one self-contained page
    prompts = load_best_prompts("best.json") # {task: prompt}, from an export file or a run directory
"""

from gpo_ray.report.export import (
    best_prompts_document,
    dump_best_prompts,
    load_best_prompts,
    load_best_prompts_document,
)
from gpo_ray.report.render_html import render_html
from gpo_ray.report.render_md import render_markdown
from gpo_ray.report.run_view import RunView, TaskView, Timing, read_run

__all__ = [
    "RunView",
    "TaskView",
    "Timing",
    "best_prompts_document",
    "dump_best_prompts",
    "load_best_prompts",
    "load_best_prompts_document",
    "read_run",
    "render_html",
    "render_markdown",
]
