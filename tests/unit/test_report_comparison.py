"""A sweep of optimizers read as the paper's comparison table (report/comparison.py): methods as rows, datasets as
columns with the paper's figure beside ours where the sweep's tasks cover a dataset of its tables
(report/paper_figures.py), of the paper's model pair ours is or else its default pair, both pairs named, each
method's cost, and the efficiency plot's points (test score against optimizer tokens)."""

from __future__ import annotations

from pathlib import Path

from gpo_ray.report.comparison import comparison, is_comparison, score_vs_tokens_png
from gpo_ray.report.paper_figures import (
    BBH_LITE_TASKS,
    BBH_TASKS,
    DEFAULT_PAIR,
    MMLU_TASKS,
    PAPER_FIGURES,
    PaperFigure,
    dataset_of,
    datasets_covered,
    model_matches,
    paper_figure,
    paper_pair,
)
from gpo_ray.report.render_sweep import render_sweep_markdown
from gpo_ray.report.run_view import RunView, TaskView, Timing
from gpo_ray.report.sweep_view import SubRunView, SweepView


def _run(method: str, scores: dict[str, float], *, tokens: int, wall: float,
         models: tuple[str, str] = ("llama-2-7b-chat", "gpt-3.5-turbo")) -> RunView:
    config = {"optimizer": {"method": method}, "task_model": {"model": models[0]},
              "optimizer_model": {"model": models[1]}}
    tasks = {t: TaskView(name=t, status="completed", steps=(), best_test_score=s) for t, s in scores.items()}
    usage = {"optimizer": {"calls": 10, "prompt_tokens": tokens, "completion_tokens": 0},
             "task_model": {"calls": 90, "prompt_tokens": 5 * tokens, "completion_tokens": 0}}
    return RunView(path=Path("x"), fingerprint="f", status="completed", config=config, tasks=tasks, usage=usage,
                   timing=Timing(wall_time_s=wall, source="results"))


def _view(tasks=("gsm8k",), *, models: tuple[str, str] = ("llama-2-7b-chat", "gpt-3.5-turbo")) -> SweepView:
    runs = []
    for variant, method, base in (("gpo", "gpo", 0.6), ("opro", "opro", 0.5)):
        for seed, delta in ((0, 0.0), (1, 0.1)):
            runs.append(SubRunView(f"{variant}--seed{seed}", variant, seed,
                                   _run(method, {t: base + delta for t in tasks}, tokens=1000 * (1 + seed),
                                        wall=2.0, models=models)))
    return SweepView(path=Path("sweep"), fingerprint="f", grid={}, variants=["gpo", "opro"], seeds=[0, 1],
                     tasks=list(tasks), runs=runs)


FIGURE = PaperFigure(method="opro", dataset="gsm8k", score=0.321, task_model="Llama-2-7b-chat",
                     optimizer_model="GPT-3.5-turbo", source="arXiv 2402.17564 Table X (a figure of this test)")


def test_methods_are_rows_datasets_columns_and_the_paper_figure_sits_beside_ours() -> None:
    view = _view()
    assert is_comparison(view)
    c = comparison(view, figures=[FIGURE])
    assert c.columns == ["method", "gsm8k", "gsm8k: paper", "mean"]
    assert c.rows == [["gpo", "0.650 ± 0.071", "–", "0.650 ± 0.071"],
                      ["opro", "0.550 ± 0.071", "0.3210", "0.550 ± 0.071"]]
    assert "task model / optimizer llama-2-7b-chat / gpt-3.5-turbo" in c.note
    assert ("paper: gsm8k: arXiv 2402.17564 Table X (a figure of this test), task model / optimizer "
            "Llama-2-7b-chat / GPT-3.5-turbo (ours)") in c.note
    assert c.cost_rows[1] == ["opro", "100", "1,500", "7,500", "2.0"]
    assert [(p.variant, p.optimizer_tokens, round(p.score, 3)) for p in c.points] == [("gpo", 1500.0, 0.65),
                                                                                      ("opro", 1500.0, 0.55)]
    assert score_vs_tokens_png(c.points).startswith(b"\x89PNG")


def test_a_dataset_matches_when_the_sweep_has_every_one_of_its_tasks() -> None:
    assert len(BBH_TASKS) == 27 and len(MMLU_TASKS) == 57 and set(BBH_LITE_TASKS) < set(BBH_TASKS)
    assert datasets_covered(BBH_TASKS) == ["bbh", "bbh-lite"]
    assert datasets_covered([*BBH_LITE_TASKS, "gsm8k", "wsc"]) == ["bbh-lite", "gsm8k", "wsc"]
    assert datasets_covered([*MMLU_TASKS, "webnlg"]) == ["mmlu", "webnlg"]
    # A subset matches nothing: 26 of BBH's tasks, three of the lite four, 56 MMLU subjects.
    assert datasets_covered(BBH_TASKS[1:]) == ["bbh-lite"]
    assert datasets_covered(BBH_LITE_TASKS[:3]) == [] and datasets_covered(MMLU_TASKS[:-1]) == []
    assert datasets_covered(["bbh/navigate", "bbh/snarks", "bbh/web_of_lies"]) == []
    assert dataset_of(["gsm8k"]) == "gsm8k" and dataset_of(["bbh/navigate"]) is None
    assert dataset_of(list(reversed(BBH_LITE_TASKS))) == "bbh-lite" and dataset_of(BBH_TASKS) == "bbh"
    assert dataset_of([*BBH_LITE_TASKS, "bbh/snarks"]) is None


def test_a_model_id_is_the_papers_model_by_its_last_path_segment() -> None:
    assert model_matches("meta-llama/Llama-2-7b-chat-hf", "Llama-2-7b-chat")
    assert model_matches("LLAMA-2-7B-CHAT", "Llama-2-7b-chat")
    assert model_matches("gpt-3.5-turbo-0125", "GPT-3.5-turbo") and model_matches("openai/gpt-4:latest", "GPT-4")
    assert model_matches("baichuan-inc/Baichuan2-7B-Chat", "Baichuan2-7b-chat")
    assert not model_matches("gpt-4o", "GPT-4") and not model_matches("gpt-4o-mini", "GPT-4")
    assert not model_matches("meta-llama/Llama-2-7b-chat-hf", "Llama-2-13b-chat")
    assert not model_matches("Llama-2-7b-chat-hf/other", "Llama-2-7b-chat")  # the last segment only
    # The pair: ours where the paper ran it on that dataset, else the paper's default.
    assert paper_pair("bbh-lite", task_model="meta-llama/Llama-2-13b-chat-hf", optimizer_model="gpt-4-0613") == (
        "Llama-2-13b-chat", "GPT-4")
    assert paper_pair("bbh-lite", task_model="gpt-3.5-turbo", optimizer_model="gpt-4o") == DEFAULT_PAIR
    assert paper_pair("gsm8k", task_model="Llama-2-13b-chat", optimizer_model="GPT-4") == DEFAULT_PAIR  # Table 5: one
    assert DEFAULT_PAIR == ("Llama-2-7b-chat", "GPT-3.5-turbo")


def test_the_figures_are_the_papers_tables() -> None:
    def figure(method: str, dataset: str, pair: tuple[str, str] = DEFAULT_PAIR) -> tuple[float, str]:
        f = paper_figure(method, dataset, pair)
        assert f is not None, (method, dataset, pair)
        return f.score, f.source

    # Table 5 (Llama-2-7b-chat / GPT-3.5-turbo): percent / 100.
    assert figure("gpo", "bbh") == (0.3543, "arXiv 2402.17564v3 Table 5")
    assert figure("ape", "gsm8k")[0] == 0.25 and figure("opro", "mmlu")[0] == 0.3805  # MMLU: its Average column
    assert figure("apo", "wsc")[0] == 0.62 and figure("pe2", "webnlg")[0] == 0.391
    # Table 7 (lite BBH), printed as prompt optimizer / task model: ours is task model / optimizer.
    assert figure("gpo", "bbh-lite") == (0.4375, "arXiv 2402.17564v3 Table 7")
    assert figure("pe2", "bbh-lite", ("Llama-2-13b-chat", "GPT-4"))[0] == 0.4491
    assert figure("apo", "bbh-lite", ("Baichuan2-7b-chat", "GPT-4"))[0] == 0.2209
    assert figure("opro", "bbh-lite", ("GPT-4", "GPT-3.5-turbo"))[0] == 0.7506
    # Every method gpo-ray has, on every dataset: Table 5's pair on five, Table 7's ten pairs on the lite BBH.
    assert {f.method for f in PAPER_FIGURES} == {"gpo", "ape", "apo", "opro", "pe2"}
    assert len(PAPER_FIGURES) == 5 * 5 + 5 * 10
    assert all(0 <= f.score <= 1 and f.source in ("arXiv 2402.17564v3 Table 5", "arXiv 2402.17564v3 Table 7")
               for f in PAPER_FIGURES)
    assert {f.models for f in PAPER_FIGURES if f.dataset == "gsm8k"} == {"Llama-2-7b-chat / GPT-3.5-turbo"}


def test_a_paper_column_stands_only_beside_a_paper_dataset() -> None:
    # Three BBH tasks are no dataset of the paper: task columns without paper columns; the note says what would match.
    c = comparison(_view(("bbh/navigate", "bbh/snarks", "bbh/web_of_lies")))
    assert c.columns == ["method", "bbh/navigate", "bbh/snarks", "bbh/web_of_lies", "mean"]
    assert "cover no dataset of arXiv 2402.17564v3" in c.note
    assert "the 27 BBH tasks (bbh/*), the lite BBH four" in c.note and "gsm8k" in c.note and "webnlg" in c.note
    # The lite four and gsm8k: a bbh-lite column (the mean of its four tasks) first, gsm8k's paper column beside it.
    tasks = tuple(sorted((*BBH_LITE_TASKS, "gsm8k")))
    c = comparison(_view(tasks, models=("meta-llama/Llama-2-13b-chat-hf", "gpt-4-0613")))
    assert c.columns == ["method", "bbh-lite", "bbh-lite: paper", *sorted(BBH_LITE_TASKS), "gsm8k", "gsm8k: paper",
                         "mean"]
    assert [r[:3] for r in c.rows] == [["gpo", "0.650 ± 0.071", "0.4617"], ["opro", "0.550 ± 0.071", "0.4335"]]
    assert [r[-3:-1] for r in c.rows] == [["0.650 ± 0.071", "0.2833"], ["0.550 ± 0.071", "0.2667"]]
    assert ("bbh-lite: arXiv 2402.17564v3 Table 7, task model / optimizer Llama-2-13b-chat / GPT-4 (ours)"
            in c.note)
    assert ("gsm8k: arXiv 2402.17564v3 Table 5, task model / optimizer Llama-2-7b-chat / GPT-3.5-turbo (the paper's "
            "default pair: ours is none of its pairs there)") in c.note
    assert "ours with task model / optimizer meta-llama/Llama-2-13b-chat-hf / gpt-4-0613" in c.note
    # BBH's 27 tasks: one family column that is the dataset, with its paper column, and the lite four's column.
    c = comparison(_view(BBH_TASKS))
    assert c.columns == ["method", "bbh-lite", "bbh-lite: paper", "bbh", "bbh: paper", "mean"]
    assert [r[4] for r in c.rows] == ["0.3543", "0.3329"]


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
