"""A sweep of optimizers read as the paper's comparison table (report/comparison.py): methods as rows, datasets as
columns with the paper's figure beside ours where the configuration matches a row of its table, the model pair that
produced ours named, each method's cost, and the efficiency plot's points (test score against optimizer tokens)."""

from __future__ import annotations

from pathlib import Path

from gpo_ray.report.comparison import (
    BBH_TASKS,
    PAPER_FIGURES,
    PaperFigure,
    comparison,
    dataset_of,
    is_comparison,
    paper_figure,
    score_vs_tokens_png,
)
from gpo_ray.report.render_sweep import render_sweep_markdown
from gpo_ray.report.run_view import RunView, TaskView, Timing
from gpo_ray.report.sweep_view import SubRunView, SweepView


def _run(method: str, scores: dict[str, float], *, tokens: int, wall: float) -> RunView:
    config = {"optimizer": {"method": method}, "task_model": {"model": "llama-2-7b-chat"},
              "optimizer_model": {"model": "gpt-3.5-turbo"}}
    tasks = {t: TaskView(name=t, status="completed", steps=(), best_test_score=s) for t, s in scores.items()}
    usage = {"optimizer": {"calls": 10, "prompt_tokens": tokens, "completion_tokens": 0},
             "task_model": {"calls": 90, "prompt_tokens": 5 * tokens, "completion_tokens": 0}}
    return RunView(path=Path("x"), fingerprint="f", status="completed", config=config, tasks=tasks, usage=usage,
                   timing=Timing(wall_time_s=wall, source="results"))


def _view(tasks=("gsm8k",)) -> SweepView:
    runs = []
    for variant, method, base in (("gpo", "gpo", 0.6), ("opro", "opro", 0.5)):
        for seed, delta in ((0, 0.0), (1, 0.1)):
            runs.append(SubRunView(f"{variant}--seed{seed}", variant, seed,
                                   _run(method, {t: base + delta for t in tasks}, tokens=1000 * (1 + seed),
                                        wall=2.0)))
    return SweepView(path=Path("sweep"), fingerprint="f", grid={}, variants=["gpo", "opro"], seeds=[0, 1],
                     tasks=list(tasks), runs=runs)


FIGURE = PaperFigure(method="opro", dataset="gsm8k", score=0.321, models="llama-2-7b-chat / gpt-3.5-turbo",
                     source="arXiv 2402.17564 Table X (a figure of this test)")


def test_methods_are_rows_datasets_columns_and_the_paper_figure_sits_beside_ours() -> None:
    view = _view()
    assert is_comparison(view)
    c = comparison(view, figures=[FIGURE])
    assert c.columns == ["method", "gsm8k", "gsm8k: paper", "mean"]
    assert c.rows == [["gpo", "0.650 ± 0.071", "–", "0.650 ± 0.071"],
                      ["opro", "0.550 ± 0.071", "0.321", "0.550 ± 0.071"]]
    assert "task model / optimizer llama-2-7b-chat / gpt-3.5-turbo" in c.note
    assert "paper: arXiv 2402.17564 Table X (a figure of this test) (llama-2-7b-chat / gpt-3.5-turbo)" in c.note
    assert c.cost_rows[1] == ["opro", "100", "1,500", "7,500", "2.0"]
    assert [(p.variant, p.optimizer_tokens, round(p.score, 3)) for p in c.points] == [("gpo", 1500.0, 0.65),
                                                                                      ("opro", 1500.0, 0.55)]
    assert score_vs_tokens_png(c.points).startswith(b"\x89PNG")


def test_a_figure_is_shown_only_where_the_dataset_matches_a_row_of_the_paper() -> None:
    assert dataset_of(["gsm8k"]) == "gsm8k" and dataset_of(["bbh/navigate"]) is None
    assert dataset_of([f"bbh/t{i}" for i in range(BBH_TASKS)]) == "bbh"
    assert paper_figure("opro", ["gsm8k"], figures=[FIGURE]) == FIGURE
    assert paper_figure("ape", ["gsm8k"], figures=[FIGURE]) is None
    # Three BBH tasks are no row of the paper (it reports BBH as the mean of its 27 tasks).
    c = comparison(_view(("bbh/navigate", "bbh/snarks", "bbh/web_of_lies")))
    assert all(row[2] == "–" for row in c.rows)
    assert "no figure of arXiv 2402.17564 matches this configuration" in c.note
    # Every figure kept as data names its source's table.
    assert all(f.source.startswith("arXiv 2402.17564 Table ") for f in PAPER_FIGURES)


def test_a_sweep_of_one_method_keeps_the_ablation_report() -> None:
    view = _view()
    one = SweepView(path=view.path, fingerprint="f", grid={}, variants=["gpo"], seeds=[0, 1], tasks=view.tasks,
                    runs=[r for r in view.runs if r.variant == "gpo"])
    assert not is_comparison(one)
    assert "## Comparison" not in render_sweep_markdown(one)
    text = render_sweep_markdown(view)
    assert text.index("## Comparison") < text.index("## Cost per method") < text.index("## Ablation")


def test_a_rival_runs_report_names_its_method_and_settings_not_gpos() -> None:
    from gpo_ray.report.tables import run_facts

    run = _run("apo", {"bbh/navigate": 0.5}, tokens=10, wall=1.0)
    run.config["optimizer"] |= {"epochs": 1, "batch_size": 4, "apo": {"beam_size": 2}, "schedule": {"kind": "cosine"}}
    facts = dict(run_facts(run))
    assert facts["optimizer"] == "method apo (beam_size 2), epochs 1, batch size 4, prompt placement end"
    assert "variant" not in facts and "edit budget" not in facts
    pe2 = _run("pe2", {"bbh/navigate": 0.5}, tokens=10, wall=1.0)
    pe2.config["optimizer"] |= {"direction": "feedback", "update": "edit"}
    facts = dict(run_facts(pe2))
    assert facts["optimizer"].endswith(", method pe2") and "direction feedback" in facts["variant"]
