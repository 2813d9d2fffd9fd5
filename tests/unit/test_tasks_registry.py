"""Task names and globs -> loaded tasks."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.config import TaskSource
from gpo_ray.errors import DataError
from gpo_ray.tasks.loaders import infer_metric
from gpo_ray.tasks.registry import available_task_names, resolve_tasks
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind


def jsonl_source(tmp_path: Path, name: str, *, answer: str = "yes") -> TaskSource:
    folder = tmp_path / name.replace("/", "_")
    folder.mkdir(parents=True)
    for split in ("train", "eval", "test"):
        (folder / f"{split}.jsonl").write_text(json.dumps({"q": f"{split}?", "a": answer}) + "\n", encoding="utf-8")
    return TaskSource(name=name, format="jsonl", path=folder, input_field="q", answer_field="a")


def test_example_task_needs_no_data_dir() -> None:
    assert available_task_names(data_dir=None) == ["example/arithmetic", "example/reviews"]
    [task] = resolve_tasks(["example/arithmetic"], data_dir=None)
    assert task.name == "example/arithmetic" and task.metric is MetricKind.NUMERIC


def test_benchmark_name_without_data_dir_says_what_to_set() -> None:
    with pytest.raises(DataError, match=r"task 'bbh/navigate' is one of the paper's benchmarks and needs data_dir"):
        resolve_tasks(["bbh/navigate"], data_dir=None)
    with pytest.raises(DataError, match=r"no task matches 'mmlu/\*' \(no data_dir is set"):
        resolve_tasks(["mmlu/*"], data_dir=None)


def test_unknown_name_suggests_close_names() -> None:
    with pytest.raises(DataError, match=r"unknown task 'example/arithmetc'; did you mean: example/arithmetic"):
        resolve_tasks(["example/arithmetc"], data_dir=None)


def test_missing_data_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="data_dir not found"):
        resolve_tasks(["example/*"], data_dir=tmp_path / "absent")


def test_sources_resolve_by_name_and_glob(tmp_path: Path) -> None:
    sources = [jsonl_source(tmp_path, "my/alpha"), jsonl_source(tmp_path, "my/beta")]
    assert available_task_names(data_dir=None, sources=sources) == ["example/arithmetic", "example/reviews", "my/alpha",
                                                                    "my/beta"]
    tasks = resolve_tasks(["my/*", "my/alpha"], data_dir=None, sources=sources)
    assert [t.name for t in tasks] == ["my/alpha", "my/beta"]
    assert tasks[0].eval[0] == Example("eval?", ("yes",), "eval:0")
    assert tasks[0].metric is MetricKind.EXACT_MATCH  # the source's declared metric


def test_duplicate_source_names_are_rejected(tmp_path: Path) -> None:
    a = jsonl_source(tmp_path, "dup")
    with pytest.raises(DataError, match="two task_sources are named 'dup'"):
        resolve_tasks(["dup"], data_dir=None, sources=[a, a])


def test_glob_matching_nothing_lists_what_exists(tmp_path: Path) -> None:
    sources = [jsonl_source(tmp_path, "my/alpha")]
    with pytest.raises(DataError, match=r"no task matches 'my/z\*'; available: my/alpha"):
        resolve_tasks(["my/z*"], data_dir=None, sources=sources)


@pytest.mark.parametrize(
    ("name", "answers", "expected"),
    [
        ("mmlu/anatomy", ["(A)"], MetricKind.MULTIPLE_CHOICE),
        ("wsc", ["(B)"], MetricKind.MULTIPLE_CHOICE),
        ("gsm8k", ["18"], MetricKind.NUMERIC),
        ("webnlg", ["some text"], MetricKind.ROUGE_L),
        ("bbh/date_understanding", ["(A)", "(F)", "(C)"], MetricKind.MULTIPLE_CHOICE),
        ("bbh/movie_recommendation", ["(A)", "(C)", "Monsters, Inc"], MetricKind.MULTIPLE_CHOICE),
        ("bbh/navigate", ["Yes", "No"], MetricKind.EXACT_MATCH),
        ("bbh/object_counting", ["8", "13"], MetricKind.EXACT_MATCH),
        ("example/arithmetic", ["7"], MetricKind.NUMERIC),  # from its meta.json
    ],
)
def test_infer_metric(name: str, answers: list[str], expected: MetricKind) -> None:
    examples = [Example(f"q{i}", (a,)) for i, a in enumerate(answers)]
    assert infer_metric(name, examples) is expected


# --- the paper's data ---------------------------------------------------------------------


def test_all_benchmarks_are_named(shared_data_dir: Path) -> None:
    names = available_task_names(data_dir=shared_data_dir)
    assert names == sorted(names)
    assert sum(n.startswith("bbh/") for n in names) == 27
    assert sum(n.startswith("mmlu/") for n in names) == 57
    assert {"gsm8k", "wsc", "webnlg", "example/arithmetic", "bbh/navigate", "mmlu/anatomy"} <= set(names)


def test_globs_over_the_shared_data(shared_data_dir: Path) -> None:
    tasks = resolve_tasks(["mmlu/high_school_*", "mmlu/high_school_physics", "wsc"], data_dir=shared_data_dir)
    names = [t.name for t in tasks]
    assert names == sorted(set(names))  # sorted, de-duplicated
    assert names[-1] == "wsc" and len(names) == 1 + 14
    assert all(t.metric is MetricKind.MULTIPLE_CHOICE for t in tasks)

    bbh = {t.name: t.metric for t in resolve_tasks(["bbh/*"], data_dir=shared_data_dir)}
    assert len(bbh) == 27
    assert bbh["bbh/navigate"] is MetricKind.EXACT_MATCH
    assert bbh["bbh/word_sorting"] is MetricKind.EXACT_MATCH
    assert bbh["bbh/date_understanding"] is MetricKind.MULTIPLE_CHOICE
    assert bbh["bbh/ruin_names"] is MetricKind.MULTIPLE_CHOICE
    assert sum(m is MetricKind.EXACT_MATCH for m in bbh.values()) == 10


def test_single_benchmarks_and_their_metrics(shared_data_dir: Path) -> None:
    tasks = {t.name: t for t in resolve_tasks(["gsm8k", "webnlg", "wsc"], data_dir=shared_data_dir)}
    assert tasks["gsm8k"].metric is MetricKind.NUMERIC
    assert tasks["webnlg"].metric is MetricKind.ROUGE_L
    assert tasks["wsc"].metric is MetricKind.MULTIPLE_CHOICE
    assert (len(tasks["wsc"].train), len(tasks["wsc"].eval), len(tasks["wsc"].test)) == (50, 50, 150)


def test_typo_in_a_benchmark_name_suggests_the_real_one(shared_data_dir: Path) -> None:
    with pytest.raises(DataError, match=r"unknown task 'bbh/navigat' \(no folder .*\); did you mean: bbh/navigate"):
        resolve_tasks(["bbh/navigat"], data_dir=shared_data_dir)
    with pytest.raises(DataError, match=r"no task matches 'mmlu/zzz\*'; available: mmlu/abstract_algebra"):
        resolve_tasks(["mmlu/zzz*"], data_dir=shared_data_dir)
