"""Read task data from disk into immutable `Task` values.

Three layouts: the GPO paper's folders (train/eval/test/format/few_shot_examples .jsonl), a user's
generic JSONL folder with their own field names, and the official BIG-Bench-Hard JSON file. Every
problem with the data becomes one `DataError` that names the file (and line) so the user can fix it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import TaskMetric, TaskSource
from gpo_ray.errors import DataError
from gpo_ray.tasks.metric_specs import metric_name
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
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .jsonl file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None

    examples: list[Example] = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which JSON strings
    # may hold unescaped (MMLU/management has one).
    for line_number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise DataError(f"{where}: cannot read the JSON ({_json_limit(e)})") from None
        example = _example_from_record(
            record,
            where=where,
            input_field=input_field,
            answer_fields=answer_fields,
            example_id=f"{id_prefix}:{len(examples)}",
        )
        examples.append(example)
    return tuple(examples)


def load_gpo_folder(path: Path, *, name: str, metric: TaskMetric | None = None) -> Task:
    """A task folder in the GPO paper's layout; `metric=None` infers it from the name and answers."""
    return _load_split_folder(path, name=name, metric=metric, input_field="input", answer_field=None)


def load_generic_jsonl(source: TaskSource) -> Task:
    """A user's folder of train/eval/test .jsonl (format/few_shot optional) with their own field names."""
    return _load_split_folder(
        source.path,
        name=source.name,
        metric=source.metric,
        input_field=source.input_field,
        answer_field=source.answer_field,
    )


def load_bbh_json(source: TaskSource) -> Task:
    """The official BIG-Bench-Hard file `{"examples": [...]}`, carved into train/eval/test.

    The file has no splits, so a seeded shuffle makes them: the same seed gives the same splits
    on every machine, which keeps runs comparable and resumable.
    """
    path = source.path
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"task '{source.name}': file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"task '{source.name}': {path} is a directory, expected a BIG-Bench-Hard .json file") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}:{e.lineno}: not valid JSON ({e.msg} at column {e.colno})") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: cannot read the JSON ({_json_limit(e)})") from None
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
    needed = source.train_size + source.eval_size + 1
    if len(pool) < needed:
        raise DataError(
            f"task '{source.name}': {path} has {len(pool)} examples, but train_size={source.train_size} "
            f"and eval_size={source.eval_size} need at least {needed} (one left for test)"
        )
    random.Random(source.split_seed).shuffle(pool)
    train_end = source.train_size
    eval_end = train_end + source.eval_size
    metric = infer_metric(source.name, pool) if source.metric is None else source.metric
    task = Task(
        name=source.name,
        metric=metric,
        train=_renumber(pool[:train_end], "train"),
        eval=_renumber(pool[train_end:eval_end], "eval"),
        test=_renumber(pool[eval_end:], "test"),
    )
    _log_loaded(task, path)
    return task


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
        raise DataError(f"{where}: expected a JSON object, got {_json_type(record)}")
    if input_field not in record:
        raise DataError(f"{where}: missing field '{input_field}'")
    question = record[input_field]
    if not isinstance(question, str):
        raise DataError(f"{where}: field '{input_field}' must be a string, got {_json_type(question)}")
    if not question.strip():
        raise DataError(f"{where}: field '{input_field}' is empty")
    field = next((f for f in answer_fields if f in record), None)
    if field is None:
        looked = " or ".join(f"'{f}'" for f in answer_fields)
        raise DataError(f"{where}: missing answer field {looked}")
    answers = _answers(record[field], where=where, field=field)
    others = {k: v for k, v in record.items() if k != input_field}  # the answer column too, as written
    extra = json.dumps(others, ensure_ascii=False, sort_keys=True) if others else ""
    return Example(input=question, answers=answers, id=example_id, extra=extra)


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
        f"{where}: field '{field}' must be a string, a number or a list of strings, got {_json_type(value)}"
    )


def _json_limit(e: BaseException) -> str:
    """Valid JSON that Python will not read: an integer of thousands of digits, or nesting past the recursion limit."""
    return "nested too deeply" if isinstance(e, RecursionError) else "a number with too many digits"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def _renumber(examples: Sequence[Example], prefix: str) -> tuple[Example, ...]:
    return tuple(Example(input=e.input, answers=e.answers, id=f"{prefix}:{i}", extra=e.extra)
                 for i, e in enumerate(examples))


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
