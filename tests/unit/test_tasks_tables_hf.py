"""Hugging Face task sources (format hf): a save_to_disk folder, a carve, a hub name offline. They need the
optional `datasets` package (pip install 'gpo-ray[hf]'), and skip, saying so, without it."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpo_ray.config import TaskSource
from gpo_ray.errors import DataError
from gpo_ray.tasks.loaders import load_table_source
from gpo_ray.vocabulary import MetricKind

datasets = pytest.importorskip("datasets", reason="the hf extra (pip install 'gpo-ray[hf]') is not installed")


def hf_rows(n: int, split: str) -> dict[str, list]:
    return {"question": [f"{split} q{i}" for i in range(n)], "answer": [str(i) for i in range(n)]}


def test_hf_save_to_disk_folder_with_train_validation_test(tmp_path: Path) -> None:
    folder = tmp_path / "hf"
    datasets.DatasetDict({s: datasets.Dataset.from_dict(hf_rows(3, s)) for s in ("train", "validation", "test")}
                         ).save_to_disk(str(folder))
    hf = TaskSource(name="h", format="hf", path=folder, input_field="question", answer_field="answer")
    task = load_table_source(hf)
    assert task.eval[2].input == "validation q2" and task.eval[2].id == "eval:2"
    assert task.metric is MetricKind.EXACT_MATCH
    mapped = load_table_source(hf.model_copy(update={"splits": {"train": "test", "eval": "train",
                                                                "test": "validation"}}))
    assert mapped.train[0].input == "test q0"
    with pytest.raises(DataError, match=r"has no split 'dev' \(it has: test, train, validation\)"):
        load_table_source(hf.model_copy(update={"splits": {"train": "train", "eval": "dev", "test": "test"}}))


def test_hf_single_split_is_carved_and_other_shapes_ask_for_splits(tmp_path: Path) -> None:
    one = tmp_path / "one"
    datasets.Dataset.from_dict(hf_rows(10, "all")).save_to_disk(str(one))
    task = load_table_source(TaskSource(name="h", format="hf", path=one, input_field="question",
                                        answer_field="answer", train_size=3, eval_size=3))
    assert len(task.test) == 4 and task.train[0].id.startswith("row:")
    two = tmp_path / "two"
    datasets.DatasetDict({s: datasets.Dataset.from_dict(hf_rows(3, s)) for s in ("a", "b")}).save_to_disk(str(two))
    with pytest.raises(DataError, match=r"has the splits a, b: set splits"):
        load_table_source(TaskSource(name="h", format="hf", path=two, input_field="question", answer_field="answer"))
    with pytest.raises(DataError, match=r"is not a Hugging Face save_to_disk folder"):
        load_table_source(TaskSource(name="h", format="hf", path=tmp_path, answer_field="answer"))


def test_hf_hub_name_offline_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        load_table_source(TaskSource(name="h", format="hf", dataset="no-such-owner/no-such-dataset-gpo"))
    line = str(e.value)
    assert "\n" not in line
    assert line.startswith("task 'h': cannot load Hugging Face dataset 'no-such-owner/no-such-dataset-gpo' (")
    assert line.endswith("save it with save_to_disk where there is one and set path to that folder")


