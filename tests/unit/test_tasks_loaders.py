"""Loading task data: the GPO folder layout, generic JSONL, the official BBH JSON file (tables: test_tasks_tables.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.config import TaskSource
from gpo_ray.errors import ConfigError, DataError
from gpo_ray.tasks.loaders import load_bbh_json, load_generic_jsonl, load_gpo_folder, load_jsonl_split
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind


def write_jsonl(path: Path, records: list[object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_task(folder: Path, *, n: int = 2, field: str = "target", skip: tuple[str, ...] = ()) -> Path:
    for split in ("train", "eval", "test", "format", "few_shot_examples"):
        if split not in skip:
            write_jsonl(folder / f"{split}.jsonl", [{"input": f"{split} q{i}", field: "(A)"} for i in range(n)])
    return folder


# --- load_jsonl_split ---------------------------------------------------------------------


def test_split_reads_target_output_numbers_and_reference_lists(tmp_path: Path) -> None:
    path = tmp_path / "eval.jsonl"
    path.write_text(
        '{"input": "2+2?", "target": "4"}\n'
        "\n"
        '{"input": "gsm", "output": 110, "solution": "... #### 110"}\n'
        '{"input": "triples", "output": ["ref one", "ref two"], "id": "Id3"}\n'
        '{"input": "half", "target": 2.5}\n',
        encoding="utf-8",
    )
    examples = load_jsonl_split(path, id_prefix="eval")
    assert examples == (
        Example("2+2?", ("4",), "eval:0"),
        Example("gsm", ("110",), "eval:1"),
        Example("triples", ("ref one", "ref two"), "eval:2"),
        Example("half", ("2.5",), "eval:3"),
    )


def test_split_prefers_target_over_output_and_honours_explicit_fields(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{"question": "q", "label": "yes", "target": "t", "output": "o"}])
    assert load_jsonl_split(path, input_field="question", id_prefix="x")[0].answers == ("t",)
    assert load_jsonl_split(path, input_field="question", answer_field="label", id_prefix="x")[0].answers == ("yes",)


def test_unicode_line_separator_inside_a_string_is_not_a_new_line(tmp_path: Path) -> None:
    # Real MMLU lines hold U+2028 unescaped; str.splitlines() would cut them in two.
    path = tmp_path / "t.jsonl"
    path.write_text('{"input": "first\u2028second", "output": "(B)"}\n', encoding="utf-8")
    assert load_jsonl_split(path, id_prefix="t")[0].input == "first\u2028second"


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('{"input": "q", "target": "a"', "not valid JSON"),
        ('["q", "a"]', "expected a JSON object, got a list"),
        ('{"target": "a"}', "missing field 'input'"),
        ('{"input": "   ", "target": "a"}', "field 'input' is empty"),
        ('{"input": 3, "target": "a"}', "field 'input' must be a string"),
        ('{"input": "q"}', "missing answer field 'target' or 'output'"),
        ('{"input": "q", "target": ""}', "field 'target' is empty"),
        ('{"input": "q", "output": []}', "field 'output' is an empty list"),
        ('{"input": "q", "target": {"a": 1}}', "must be a string, a number or a list of strings"),
        ('{"input": "q", "output": ["ok", null]}', "field 'output[1]'"),
    ],
)
def test_malformed_line_names_file_line_and_problem(tmp_path: Path, line: str, problem: str) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text('{"input": "fine", "target": "ok"}\n\n' + line + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_jsonl_split(path, id_prefix="train")
    message = str(err.value)
    assert message.startswith(f"{path}:3: ")
    assert problem in message


def test_missing_split_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_jsonl_split(tmp_path / "nope.jsonl", id_prefix="x")


# --- load_gpo_folder ----------------------------------------------------------------------


def test_gpo_folder_loads_all_splits_with_ids(tmp_path: Path) -> None:
    task = load_gpo_folder(write_task(tmp_path / "t", n=3), name="mine/t")
    assert task.name == "mine/t"
    assert [len(s) for s in (task.train, task.eval, task.test, task.format_examples, task.few_shot_examples)] == [3] * 5
    assert task.eval[2] == Example("eval q2", ("(A)",), "eval:2")
    assert task.few_shot_examples[0].id == "few_shot:0"
    assert task.metric is MetricKind.MULTIPLE_CHOICE  # inferred from "(A)" answers


def test_gpo_folder_optional_files_may_be_absent(tmp_path: Path) -> None:
    task = load_gpo_folder(
        write_task(tmp_path / "t", skip=("format", "few_shot_examples")), name="t", metric=MetricKind.EXACT_MATCH
    )
    assert task.format_examples == () and task.few_shot_examples == ()
    assert task.metric is MetricKind.EXACT_MATCH


def test_gpo_folder_missing_folder_names_task_and_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"task 'bbh/x': folder not found: .*nowhere"):
        load_gpo_folder(tmp_path / "nowhere", name="bbh/x")


def test_gpo_folder_missing_required_split(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t", skip=("test",))
    with pytest.raises(DataError) as err:
        load_gpo_folder(folder, name="bbh/t")
    assert "task 'bbh/t'" in str(err.value) and "test.jsonl" in str(err.value) and str(folder) in str(err.value)


def test_gpo_folder_empty_split_names_task_and_split(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t")
    (folder / "eval.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"task 'bbh/t': split 'eval' is empty"):
        load_gpo_folder(folder, name="bbh/t")


# --- load_generic_jsonl -------------------------------------------------------------------


def test_generic_jsonl_uses_the_sources_field_names(tmp_path: Path) -> None:
    folder = tmp_path / "sentiment"
    for split in ("train", "eval", "test"):
        write_jsonl(folder / f"{split}.jsonl", [{"text": f"{split} great movie", "label": "positive"}])
    source = TaskSource(name="sentiment", format="jsonl", path=folder, input_field="text", answer_field="label")
    task = load_generic_jsonl(source)
    assert task.name == "sentiment" and task.metric is MetricKind.EXACT_MATCH
    assert task.test == (Example("test great movie", ("positive",), "test:0"),)
    assert task.format_examples == ()


def test_generic_jsonl_wrong_field_name_names_the_file_and_its_fields(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t")
    source = TaskSource(name="t", format="jsonl", path=folder, answer_field="label")
    with pytest.raises(ConfigError, match=r"answer_field names column 'label', which .*train\.jsonl does not have "
                                          r"\(its columns: input, target\)"):
        load_generic_jsonl(source)


def test_generic_jsonl_line_without_the_field_points_at_the_line(tmp_path: Path) -> None:
    folder = write_task(tmp_path / "t")
    write_jsonl(folder / "train.jsonl", [{"input": "q", "target": "a"}, {"input": "q2"}])
    with pytest.raises(DataError, match=r"train\.jsonl:2: missing column 'target' \(answer_field\)"):
        load_generic_jsonl(TaskSource(name="t", format="jsonl", path=folder))


# --- load_bbh_json ------------------------------------------------------------------------


def bbh_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "navigate.json"
    examples = [{"input": f"question {i}", "target": "Yes" if i % 2 else "No"} for i in range(n)]
    path.write_text(json.dumps({"canary": "x", "examples": examples}), encoding="utf-8")
    return path


def test_bbh_json_is_split_by_seed_without_overlap(tmp_path: Path) -> None:
    source = TaskSource(name="nav", format="bbh_json", path=bbh_file(tmp_path, 20), train_size=5, eval_size=4)
    task = load_bbh_json(source)
    assert (len(task.train), len(task.eval), len(task.test)) == (5, 4, 11)
    inputs = [e.input for e in task.train + task.eval + task.test]
    assert sorted(inputs) == sorted(f"question {i}" for i in range(20))
    assert [e.id for e in task.eval] == ["eval:0", "eval:1", "eval:2", "eval:3"]
    assert load_bbh_json(source) == task  # same seed, same splits
    other = load_bbh_json(source.model_copy(update={"split_seed": 1}))
    assert [e.input for e in other.train] != [e.input for e in task.train]


def test_bbh_json_too_few_examples(tmp_path: Path) -> None:
    source = TaskSource(name="nav", format="bbh_json", path=bbh_file(tmp_path, 9), train_size=5, eval_size=4)
    with pytest.raises(DataError, match=r"task 'nav': .* has 9 examples.* at least 10"):
        load_bbh_json(source)


def test_bbh_json_wrong_shape_and_bad_example(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_text('[{"input": "q", "target": "a"}]', encoding="utf-8")
    with pytest.raises(DataError, match='"examples" list'):
        load_bbh_json(TaskSource(name="x", format="bbh_json", path=path))
    path.write_text('{"examples": [{"input": "q", "target": "a"}, {"input": "q"}]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"examples\[1\]: missing answer field 'target'"):
        load_bbh_json(TaskSource(name="x", format="bbh_json", path=path))


# --- the paper's data ---------------------------------------------------------------------


def test_real_folders_load_with_their_answer_fields(shared_data_dir: Path) -> None:
    gsm8k = load_gpo_folder(shared_data_dir / "reasoning" / "GSM8K", name="gsm8k")
    assert (len(gsm8k.train), len(gsm8k.eval), len(gsm8k.test)) == (100, 100, 300)
    assert gsm8k.train[0].answers == ("4",) and gsm8k.metric is MetricKind.NUMERIC

    webnlg = load_gpo_folder(shared_data_dir / "common-nlp" / "WebNLG", name="webnlg")
    assert len(webnlg.eval[0].answers) == 3 and webnlg.metric is MetricKind.ROUGE_L

    navigate = load_gpo_folder(shared_data_dir / "BIG-Bench-Hard" / "navigate", name="bbh/navigate")
    assert (len(navigate.train), len(navigate.eval), len(navigate.test)) == (48, 48, 144)
    assert len(navigate.format_examples) == 5 and navigate.eval[0].answer in {"Yes", "No"}

    management = load_gpo_folder(shared_data_dir / "MMLU" / "management", name="mmlu/management")
    assert management.test[-1].answer.startswith("(")
