"""Read a table (CSV, JSONL, Parquet, a Hugging Face dataset) into rows that know where they came from.

Only reading lives here; which column is the input or the reference is loaders.py's business. Every row carries
the place an error about it names ("tickets.csv:14", "data.parquet: row 3"), and every problem with a file is one
`DataError` line naming it, so a bad row is found and fixed instead of crashing or being skipped.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpo_ray.config import TaskSource
from gpo_ray.errors import ConfigError, DataError, error_line

# File name endings of the table formats that live in files.
TABLE_SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "parquet": ".parquet"}
HF_EXTRA_HINT = "pip install 'gpo-ray[hf]'"


@dataclass(frozen=True)
class Row:
    where: str  # what an error about this row names: "eval.csv:14"
    number: int  # 1-based position among the table's data rows
    values: dict[str, Any]


@dataclass(frozen=True)
class Table:
    source: str  # what an error about the whole table names: a file, or a dataset and split
    columns: tuple[str, ...]  # JSONL: the first line's keys (each line may have its own)
    rows: tuple[Row, ...]


def read_table_file(path: Path, table_format: str) -> Table:
    """One CSV, JSONL or Parquet file -> its rows."""
    if table_format == "csv":
        return read_csv(path)
    if table_format == "jsonl":
        return read_jsonl(path)
    if table_format == "parquet":
        return read_parquet(path)
    raise ValueError(f"not a table file format: {table_format!r}")


def read_csv(path: Path) -> Table:
    """A CSV file with a header row (stdlib csv: quoted fields may hold commas and new lines)."""
    reader = csv.reader(io.StringIO(read_text_file(path), newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise DataError(f"{path}: empty file, expected a header row of column names")
        columns = tuple(name.strip() for name in header)
        _check_header(path, columns)
        rows: list[Row] = []
        for record in reader:
            if not record or record == [""]:
                continue  # a blank line
            where = f"{path}:{reader.line_num}"
            if len(record) != len(columns):
                raise DataError(f"{where}: {len(record)} values, but the header has {len(columns)} columns")
            rows.append(Row(where, len(rows) + 1, dict(zip(columns, record, strict=True))))
    except csv.Error as e:
        raise DataError(f"{path}:{reader.line_num}: not valid CSV ({e})") from None
    return Table(str(path), columns, tuple(rows))


def read_jsonl(path: Path, *, expected: str = "a file") -> Table:
    """One JSON object per line; blank lines are skipped; any other bad line stops the load with
    "<file>:<line>: <problem>", because silently dropping examples would change the score the user sees."""
    rows: list[Row] = []
    # Split on "\n" only: str.splitlines() also breaks at U+2028 and friends, which JSON strings may hold unescaped
    # (MMLU/management has one).
    for line_number, line in enumerate(read_text_file(path, expected=expected).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{line_number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:
            raise DataError(f"{where}: cannot read the JSON ({json_limit(e)})") from None
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected a JSON object, got {json_type(record)}")
        rows.append(Row(where, len(rows) + 1, record))
    columns = tuple(rows[0].values) if rows else ()
    return Table(str(path), columns, tuple(rows))


def json_limit(e: BaseException) -> str:
    """Valid JSON that Python will not read: an integer of thousands of digits, or nesting past the recursion limit."""
    return "nested too deeply" if isinstance(e, RecursionError) else "a number with too many digits"


def json_type(value: Any) -> str:
    """A JSON value's type as an error message says it ("a list", "null")."""
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


def read_parquet(path: Path) -> Table:
    """A Parquet file, read with pyarrow; values keep their types (numbers, lists)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"{path}: not a readable Parquet file ({error_line(e)})") from None
    return _table_of_records(str(path), tuple(table.column_names), table.to_pylist())


def read_hf_dataset(source: TaskSource) -> dict[str, Table]:
    """A Hugging Face dataset -> split name -> table. A single `Dataset` (no splits) comes back under ""."""
    try:
        import datasets
    except ImportError:
        raise ConfigError(f"task '{source.name}': format hf needs the datasets package: {HF_EXTRA_HINT}") from None
    if source.path is not None:
        where = str(source.path)
        if not source.path.is_dir():
            raise DataError(f"task '{source.name}': folder not found: {source.path} (format hf reads a save_to_disk folder)")
        try:
            data = datasets.load_from_disk(str(source.path))
        except Exception as e:  # noqa: BLE001 - datasets raises many types for a folder it cannot read
            raise DataError(f"task '{source.name}': {source.path} is not a Hugging Face save_to_disk folder "
                            f"({error_line(e)})") from None
    else:
        where = f"Hugging Face dataset '{source.dataset}'"
        try:
            data = datasets.load_dataset(source.dataset, source.subset)
        except Exception as e:  # noqa: BLE001 - offline, unknown name, gated: all end here, as one line
            raise DataError(f"task '{source.name}': cannot load {where} ({error_line(e)}); without network, "
                            "save it with save_to_disk where there is one and set path to that folder") from None
    if isinstance(data, datasets.Dataset):
        return {"": _hf_table(where, data)}
    return {split: _hf_table(f"{where} split '{split}'", part) for split, part in data.items()}


def _hf_table(where: str, dataset: Any) -> Table:
    return _table_of_records(where, tuple(dataset.column_names), dataset)


def _table_of_records(source: str, columns: tuple[str, ...], records: Any) -> Table:
    rows = tuple(Row(f"{source}: row {i}", i, dict(record)) for i, record in enumerate(records, start=1))
    return Table(source, columns, rows)


def _check_header(path: Path, columns: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for index, name in enumerate(columns, start=1):
        if not name:
            raise DataError(f"{path}:1: column {index} of the header has no name")
        if name in seen:
            raise DataError(f"{path}:1: column '{name}' appears twice in the header")
        seen.add(name)


def read_text_file(path: Path, *, expected: str = "a file") -> str:
    """A data file's text (a UTF-8 byte-order mark dropped); anything unreadable is one DataError naming it."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected {expected}") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
