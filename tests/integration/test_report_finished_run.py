"""The report and export of a real finished run: gpo_ray.api.optimize on the shared Ray cluster against the fake
endpoint, two small tasks, one epoch."""

from __future__ import annotations

import base64
import html
import re

import pytest

from gpo_ray.api import optimize
from gpo_ray.config import LLMRoleConfig, RunConfig, TaskSource
from gpo_ray.report import best_prompts_document, load_best_prompts, read_run, render_html, render_markdown
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples

from tests.integration.test_e2e_optimize import write_sum_task

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]


def small_config(tmp_path, base_url: str) -> RunConfig:
    sources = []
    for name, seed in (("sums/a", 1), ("sums/b", 2)):
        folder = tmp_path / "data" / name.replace("/", "_")
        if not folder.exists():
            write_sum_task(folder, seed=seed)
        sources.append(TaskSource(name=name, format="jsonl", path=folder, metric="numeric"))
    role = LLMRoleConfig(base_url=base_url, model="fake-llm", max_tokens=64, timeout_s=10)
    return RunConfig(
        tasks=["sums/*"], task_sources=sources, task_model=role,
        optimizer_model=role.model_copy(update={"temperature": 1.0}),
        optimizer={"epochs": 1, "batch_size": 4, "candidates": 3, "initial_prompt": "Answer the question.", "seed": 7,
                   "schedule": {"initial": 12, "final": 4}},
        cluster={"num_refiners": 1, "num_evaluators": 1, "evaluator_max_in_flight": 4},
        run_dir=tmp_path / "run",
    )


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report-run")
    config = small_config(tmp, "http://placeholder/v1")
    tasks = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    fake = FakeLLMConfig(base_accuracy=0.3, skill_phrases={"step by step": 0.35, "carefully": 0.25},
                         answer_key=answer_key_from_examples(ex for t in tasks for ex in (*t.train, *t.eval, *t.test)),
                         optimizer_phrases=["Think step by step.", "Work carefully.", "Be concise."])
    with ThreadedFake(fake) as server:
        results = optimize(small_config(tmp, server.base_url))
    return results


def test_the_report_of_a_finished_run_shows_every_task_its_scores_and_plots(finished):
    run = read_run(finished.run_dir)
    assert run.status == "completed" and set(run.tasks) == {"sums/a", "sums/b"}
    page = render_html(run)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page))
    for name, r in finished.tasks.items():
        section = page.split(f'id="task-{name.replace("/", "-")}"')[1].split("</section>")[0]
        (src,) = re.findall(r'<img class="task-plot" alt="[^"]+" src="data:image/png;base64,([^"]+)"', section)
        png = base64.b64decode(src)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
        row = (f"{name} completed {len(r.steps)}/{len(r.steps)} {r.initial_eval_score:.3f} {r.best_eval_score:.3f} "
               f"{r.best_eval_score - r.initial_eval_score:+.3f} {r.initial_test_score:.3f} {r.best_test_score:.3f} "
               f"{r.best_step}")
        assert row in text
        assert r.best_eval_score > r.initial_eval_score, "the fake rewards the skill phrases: the run climbed"
        assert f"<pre>{html.escape(r.initial_prompt)}</pre>" in section
        assert f"<pre>{html.escape(r.best_prompt)}</pre>" in section
        assert "<ins>" in section, "the best prompt differs from the initial one: the diff shows insertions"
    u = finished.usage
    calls, requests = (u["optimizer"][k] + u["task_model"][k] for k in ("calls", "requests"))
    assert f"total {calls:,} {requests:,}" in text
    assert "wall time unknown" not in text
    md = render_markdown(run)
    assert md.count("\n## sums/") == 2 and md.count("**Word diff, initial → best:**") == 2


def test_the_export_of_a_finished_run_gives_each_task_its_best_prompt(finished, tmp_path):
    doc = best_prompts_document(read_run(finished.run_dir, resolve_data=False))
    assert {n: (e["prompt"], e["eval_score"], e["test_score"], e["step"]) for n, e in doc["prompts"].items()} == {
        n: (r.best_prompt, r.best_eval_score, r.best_test_score, r.best_step) for n, r in finished.tasks.items()}
    assert load_best_prompts(finished.run_dir) == {n: r.best_prompt for n, r in finished.tasks.items()}
