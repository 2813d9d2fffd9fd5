"""Read task data from disk into immutable `Task` values.

The GPO paper's folders (train/eval/test/format/few_shot_examples .jsonl), the official BIG-Bench-Hard JSON
file, and a user's tables (CSV, JSONL, Parquet, a Hugging Face dataset: tables.py reads them) as named splits or
one table carved by a seeded shuffle, with their own columns. Every problem with the data becomes one `DataError`
that names the file (and line or row) so the user can fix it; a setting that names a column the data does not
have is a `ConfigError` listing the columns it does have.
"""

from __future__ import annotations

import dataclasses
import json
import random
import re
import string
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import TaskMetric, TaskSource
from gpo_ray.errors import ConfigError, DataError
from gpo_ray.tasks.metric_specs import metric_name
from gpo_ray.tasks.tables import (
    TABLE_SUFFIXES,
    Row,
    Table,
    json_limit,
    json_type,
    read_hf_dataset,
    read_jsonl,
    read_table_file,
    read_text_file,
)
from gpo_ray.tasks.types import Example, Task
from gpo_ray.vocabulary import MetricKind

EXAMPLE_PREFIX = "example/"
EXAMPLES_DIR = Path(__file__).resolve().parent / "examples"
_OPTION_LETTER = re.compile(r"^\([A-Z]\)$")
_DEFAULT_ANSWER_FIELDS = ("target", "output")
_REQUIRED_SPLITS = ("train", "eval", "test")
# Optional files: (file stem, id prefix).
_OPTIONAL_SPLITS = (("format", "format"), ("few_shot_examples", "few_shot"))


def load_jsonl_split(
    path: Path,
    *,
    input_field: str = "input",
    answer_field: str | None = None,
    id_prefix: str,
) -> tuple[Example, ...]:
    """One JSONL file -> examples. `answer_field=None` tries `target`, then `output`.

    Blank lines are skipped; any other bad line stops the load with "<file>:<line>: <problem>",
    because silently dropping examples would change the score the user sees.
    """
    answer_fields = (answer_field,) if answer_field is not None else _DEFAULT_ANSWER_FIELDS
    return tuple(
        _example_from_record(row.values, where=row.where, input_field=input_field, answer_fields=answer_fields,
                             example_id=f"{id_prefix}:{i}")
        for i, row in enumerate(read_jsonl(path, expected="a .jsonl file").rows)
    )


def load_gpo_folder(path: Path, *, name: str, metric: TaskMetric | None = None) -> Task:
    """A task folder in the GPO paper's layout; `metric=None` infers it from the name and answers."""
    return _load_split_folder(path, name=name, metric=metric, input_field="input", answer_field=None)


def load_generic_jsonl(source: TaskSource) -> Task:
    """A user's folder of train/eval/test .jsonl (format/few_shot optional), or one .jsonl file to carve, with
    their own field names: a table source like CSV (`load_table_source`)."""
    return load_table_source(source)


def load_bbh_json(source: TaskSource) -> Task:
    """The official BIG-Bench-Hard file `{"examples": [...]}`, carved into train/eval/test.

    The file has no splits, so a seeded shuffle makes them: the same seed gives the same splits
    on every machine, which keeps runs comparable and resumable.
    """
    path = source.path
    text = read_text_file(path, expected="a BIG-Bench-Hard .json file")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: cannot read the JSON ({json_limit(e)})") from None
    if not isinstance(data, dict) or not isinstance(data.get("examples"), list):
        raise DataError(f"{path}: expected a JSON object with an \"examples\" list (the BIG-Bench-Hard format)")

    records: list[Any] = data["examples"]
    pool = [
        _example_from_record(
            record,
            where=f"{path}: examples[{index}]",
            input_field=source.input_field,
            answer_fields=(source.answer_field,),
            example_id="",
        )
        for index, record in enumerate(records)
    ]
    train, eval_, test = carve_splits(pool, source, where=str(path))
    metric = infer_metric(source.name, pool) if source.metric is None else source.metric
    task = Task(
        name=source.name,
        metric=metric,
        train=_renumber(train, "train"),
        eval=_renumber(eval_, "eval"),
        test=_renumber(test, "test"),
    )
    _log_loaded(task, path)
    return task


def carve_splits(
    pool: Sequence[Example], source: TaskSource, *, where: str
) -> tuple[list[Example], list[Example], list[Example]]:
    """One table's examples -> train, eval, test: `train_size`, `eval_size`, the rest, after a shuffle seeded
    with `split_seed`, so the same seed gives the same splits on every machine (runs stay comparable and
    resumable)."""
    needed = source.train_size + source.eval_size + 1
    if len(pool) < needed:
        raise DataError(
            f"task '{source.name}': {where} has {len(pool)} examples, but train_size={source.train_size} "
            f"and eval_size={source.eval_size} need at least {needed} (one left for test)"
        )
    shuffled = list(pool)
    random.Random(source.split_seed).shuffle(shuffled)
    train_end = source.train_size
    eval_end = train_end + source.eval_size
    return shuffled[:train_end], shuffled[train_end:eval_end], shuffled[eval_end:]


# --- a user's tables: CSV, JSONL, Parquet, Hugging Face --------------------------------------------------------


def load_table_source(source: TaskSource) -> Task:
    """A `task_sources` entry of format csv, jsonl, parquet or hf -> a Task.

    A folder of split files (`train.csv`, `eval.csv`, `test.csv`, or the stems `splits` names; `format` and
    `few_shot_examples` files are optional) or a dataset's named splits are used as they are; one table is carved
    (`carve_splits`). Example ids: `split:index` for named splits, `row:N` (the row in the table) for a carve,
    or the `id_field` column's value.
    """
    _check_references_for_metric(source)
    named, optional, carved = _source_tables(source)
    if carved is not None:
        pool = examples_from_table(carved, source, id_prefix="row", first_index=1)
        train, eval_, test = carve_splits(pool, source, where=carved.source)
        splits = {"train": tuple(train), "eval": tuple(eval_), "test": tuple(test)}
    else:
        splits = {split: examples_from_table(table, source, id_prefix=split) for split, table in named.items()}
        for split, examples in splits.items():
            if not examples:
                raise DataError(f"task '{source.name}': split '{split}' is empty ({named[split].source})")
    extra = {stem: examples_from_table(table, source, id_prefix=prefix) for stem, (prefix, table) in optional.items()}
    _check_unique_ids(source, list(splits.values()))  # format examples may repeat training rows
    every = splits["train"] + splits["eval"] + splits["test"]
    task = Task(
        name=source.name,
        metric=infer_metric(source.name, every) if source.metric is None else source.metric,
        train=splits["train"],
        eval=splits["eval"],
        test=splits["test"],
        format_examples=extra.get("format", ()),
        few_shot_examples=extra.get("few_shot_examples", ()),
        placement=source.placement,
    )
    _log_loaded(task, source.path or Path(str(source.dataset)))
    return task


def examples_from_table(
    table: Table, source: TaskSource, *, id_prefix: str, first_index: int = 0
) -> tuple[Example, ...]:
    """A table's rows -> examples under the source's input, reference and id settings; each example keeps every
    column of its row in `fields`. `first_index=1` with prefix "row" numbers ids by the table's rows."""
    _check_columns(table, source)
    return tuple(
        _example_from_row(row, source, example_id=f"{id_prefix}:{row.number - 1 + first_index}")
        for row in table.rows
    )


def template_columns(template: str) -> tuple[str, ...]:
    """The column names an `input_template` uses, in order, each once."""
    names = (field for _, field, _, _ in string.Formatter().parse(template) if field is not None)
    return tuple(dict.fromkeys(names))


def _source_tables(source: TaskSource) -> tuple[dict[str, Table], dict[str, tuple[str, Table]], Table | None]:
    """(named splits, optional format/few-shot tables, or the one table to carve)."""
    if source.format == "hf":
        return _hf_tables(source)
    path = source.path
    assert path is not None  # TaskSource validates it for every format but hf
    if path.is_file():
        return {}, {}, read_table_file(path, source.format)
    if not path.is_dir():
        raise DataError(f"task '{source.name}': not found: {path}")
    suffix = TABLE_SUFFIXES[source.format]
    stems = source.splits or {split: split for split in _REQUIRED_SPLITS}
    files = {split: path / f"{stems[split]}{suffix}" for split in _REQUIRED_SPLITS}
    missing = [f.name for f in files.values() if not f.is_file()]
    if missing:
        raise DataError(f"task '{source.name}': missing {', '.join(missing)} in {path} (or give path a single "
                        f"{suffix} file to carve into splits)")
    named = {split: read_table_file(f, source.format) for split, f in files.items()}
    optional = {
        stem: (prefix, read_table_file(path / f"{stem}{suffix}", source.format))
        for stem, prefix in _OPTIONAL_SPLITS
        if (path / f"{stem}{suffix}").is_file()
    }
    return named, optional, None


def _hf_tables(source: TaskSource) -> tuple[dict[str, Table], dict[str, tuple[str, Table]], Table | None]:
    tables = read_hf_dataset(source)
    where = str(source.path) if source.path is not None else f"Hugging Face dataset '{source.dataset}'"
    names = ", ".join(sorted(tables)) or "none"
    if source.splits is not None:
        absent = [name for name in source.splits.values() if name not in tables]
        if absent:
            raise DataError(f"task '{source.name}': {where} has no split '{absent[0]}' (it has: {names})")
        return {split: tables[name] for split, name in source.splits.items()}, {}, None
    eval_name = next((n for n in ("eval", "validation") if n in tables), None)
    if eval_name is not None and "train" in tables and "test" in tables:
        return {"train": tables["train"], "eval": tables[eval_name], "test": tables["test"]}, {}, None
    if len(tables) == 1:
        return {}, {}, next(iter(tables.values()))
    raise DataError(f"task '{source.name}': {where} has the splits {names}: set splits: {{train: ..., eval: ..., "
                    "test: ...}} to name the three")


def _check_references_for_metric(source: TaskSource) -> None:
    """A task without references can only be scored by a metric that needs none; every built-in kind needs one."""
    if source.reference_fields or not (source.metric is None or isinstance(source.metric, MetricKind)):
        return
    metric = "inferred from the answers" if source.metric is None else MetricKind(source.metric).value
    raise ConfigError(f"task '{source.name}' has no reference (answer_field: null), but its metric ({metric}) "
                      "compares each reply to one: give answer_field, or a metric that needs no reference")


def _check_columns(table: Table, source: TaskSource) -> None:
    """Every column a setting names is in the table; else one line naming the setting, column and file."""
    if not table.rows and not table.columns:
        return  # an empty split: the caller names it
    wanted: list[tuple[str, str]] = []
    if source.input_template is not None:
        wanted += [("input_template", c) for c in template_columns(source.input_template)]
    else:
        wanted.append(("input_field", source.input_field))
    setting = "answer_fields" if source.answer_fields is not None else "answer_field"
    wanted += [(setting, c) for c in source.reference_fields]
    if source.id_field is not None:
        wanted.append(("id_field", source.id_field))
    for setting, column in wanted:
        if column not in table.columns:
            raise ConfigError(f"task '{source.name}': {setting} names column '{column}', which {table.source} "
                              f"does not have (its columns: {', '.join(table.columns) or 'none'})")


def _example_from_row(row: Row, source: TaskSource, *, example_id: str) -> Example:
    values = row.values
    if source.input_template is not None:
        cells = {c: _present(row, c, setting="input_template") for c in template_columns(source.input_template)}
        question = source.input_template.format_map({c: _cell_text(v) for c, v in cells.items()})
    else:
        question = _present(row, source.input_field, setting="input_field")
        if not isinstance(question, str):
            raise DataError(f"{row.where}: column '{source.input_field}' must be text, got {type(question).__name__}")
    references = source.reference_fields
    if not references:
        answers: tuple[str, ...] = ()
    elif len(references) == 1:
        answers = _answers(_present(row, references[0], setting="answer_field"), where=row.where,
                           field=references[0])
    else:
        # Several reference columns: the built-in metrics compare the reply with one JSON object of them (in
        # the order given); each column stays in `fields` for a metric of the user's own.
        obj = {c: _present(row, c, setting="answer_fields") for c in references}
        answers = (json.dumps(obj, ensure_ascii=False, default=str),)
    if source.id_field is not None:
        example_id = _cell_text(_present(row, source.id_field, setting="id_field"))
    return Example(input=question, answers=answers, id=example_id, fields=dict(values))


def _present(row: Row, column: str, *, setting: str) -> Any:
    """A row's value in a column a setting names: a missing or empty one is an error naming the row."""
    if column not in row.values:
        raise DataError(f"{row.where}: missing column '{column}' ({setting}); this row has: "
                        f"{', '.join(row.values) or 'nothing'}")
    value = row.values[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{row.where}: column '{column}' ({setting}) is empty")
    return value


def _cell_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool | int | float):
        return _one_answer(value, where="", field="")
    return json.dumps(value, ensure_ascii=False, default=str)


def _check_unique_ids(source: TaskSource, groups: Sequence[Sequence[Example]]) -> None:
    if source.id_field is None:
        return
    seen: set[str] = set()
    for examples in groups:
        for example in examples:
            if example.id in seen:
                raise DataError(f"task '{source.name}': id '{example.id}' (id_field '{source.id_field}') "
                                "appears twice; ids must be unique")
            seen.add(example.id)


def _load_split_folder(
    path: Path,
    *,
    name: str,
    metric: TaskMetric | None,
    input_field: str,
    answer_field: str | None,
) -> Task:
    if not path.is_dir():
        raise DataError(f"task '{name}': folder not found: {path}")
    missing = [split for split in _REQUIRED_SPLITS if not (path / f"{split}.jsonl").is_file()]
    if missing:
        files = ", ".join(f"{split}.jsonl" for split in missing)
        raise DataError(f"task '{name}': missing {files} in {path}")

    def read(stem: str, prefix: str) -> tuple[Example, ...]:
        return load_jsonl_split(
            path / f"{stem}.jsonl", input_field=input_field, answer_field=answer_field, id_prefix=prefix
        )

    splits = {split: read(split, split) for split in _REQUIRED_SPLITS}
    for split, examples in splits.items():
        if not examples:
            raise DataError(f"task '{name}': split '{split}' is empty ({path / f'{split}.jsonl'})")
    optional = {
        stem: read(stem, prefix) if (path / f"{stem}.jsonl").is_file() else ()
        for stem, prefix in _OPTIONAL_SPLITS
    }
    if metric is None:
        metric = infer_metric(name, splits["train"] + splits["eval"] + splits["test"])
    task = Task(
        name=name,
        metric=metric,
        train=splits["train"],
        eval=splits["eval"],
        test=splits["test"],
        format_examples=optional["format"],
        few_shot_examples=optional["few_shot_examples"],
    )
    _log_loaded(task, path)
    return task


def _example_from_record(
    record: Any,
    *,
    where: str,
    input_field: str,
    answer_fields: Sequence[str],
    example_id: str,
) -> Example:
    if not isinstance(record, dict):
        raise DataError(f"{where}: expected a JSON object, got {json_type(record)}")
    if input_field not in record:
        raise DataError(f"{where}: missing field '{input_field}'")
    question = record[input_field]
    if not isinstance(question, str):
        raise DataError(f"{where}: field '{input_field}' must be a string, got {json_type(question)}")
    if not question.strip():
        raise DataError(f"{where}: field '{input_field}' is empty")
    field = next((f for f in answer_fields if f in record), None)
    if field is None:
        looked = " or ".join(f"'{f}'" for f in answer_fields)
        raise DataError(f"{where}: missing answer field {looked}")
    answers = _answers(record[field], where=where, field=field)
    return Example(input=question, answers=answers, id=example_id, fields=dict(record))  # the row as written


def _answers(value: Any, *, where: str, field: str) -> tuple[str, ...]:
    """A string, number or list of them -> the answers tuple (several references, e.g. WebNLG)."""
    if isinstance(value, list):
        if not value:
            raise DataError(f"{where}: field '{field}' is an empty list")
        return tuple(_one_answer(item, where=where, field=f"{field}[{i}]") for i, item in enumerate(value))
    return (_one_answer(value, where=where, field=field),)


def _one_answer(value: Any, *, where: str, field: str) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, str):
        if not value.strip():
            raise DataError(f"{where}: field '{field}' is empty")
        return value
    raise DataError(
        f"{where}: field '{field}' must be a string, a number or a list of strings, got {json_type(value)}"
    )


def _renumber(examples: Sequence[Example], prefix: str) -> tuple[Example, ...]:
    return tuple(dataclasses.replace(e, id=f"{prefix}:{i}") for i, e in enumerate(examples))


def _log_loaded(task: Task, path: Path) -> None:
    structlog.get_logger().bind(task=task.name, path=str(path)).debug(
        "task loaded",
        metric=metric_name(task.metric),
        train=len(task.train),
        eval=len(task.eval),
        test=len(task.test),
    )


# --- which metric a task is scored with -------------------------------------------------------


def infer_metric(name: str, task_examples: Sequence[Example]) -> MetricKind:
    """The paper's metric for a task: from its name, or from what its answers look like."""
    if name.startswith("mmlu/") or name == "wsc":
        return MetricKind.MULTIPLE_CHOICE
    if name == "gsm8k":
        return MetricKind.NUMERIC
    if name == "webnlg":
        return MetricKind.ROUGE_L
    if name.startswith(EXAMPLE_PREFIX):
        return _example_metric(name[len(EXAMPLE_PREFIX) :])
    # BBH and anything else: option letters mean multiple choice. A majority, not all: a few
    # BBH tasks (movie_recommendation, ruin_names) carry one or two free-text targets.
    letters = sum(1 for e in task_examples if _OPTION_LETTER.match(e.answer.strip()))
    if task_examples and letters * 2 > len(task_examples):
        return MetricKind.MULTIPLE_CHOICE
    return MetricKind.EXACT_MATCH


def example_task_dir(name: str) -> Path:
    """Folder of a shipped example task (`arithmetic` for `example/arithmetic`)."""
    return EXAMPLES_DIR / name


def _example_metric(name: str) -> MetricKind:
    meta_path = example_task_dir(name) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return MetricKind(meta["metric"])
    except FileNotFoundError:
        raise DataError(f"example task '{name}' has no meta.json at {meta_path}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        kinds = ", ".join(k.value for k in MetricKind)
        raise DataError(f"{meta_path}: expected {{\"metric\": one of {kinds}}}") from None
