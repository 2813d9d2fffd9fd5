"""Python metrics the tests name in task sources (`tests.metric_functions:NAME`): importable by the Ray workers of
the shared test cluster, which inherit the test run's PYTHONPATH."""

from __future__ import annotations

from pathlib import Path


def exact_number(example: dict, reply: str) -> tuple[float, str | None]:
    """1 when the reply's last word is the answer; else 0, saying what was expected."""
    words = reply.replace(",", " ").split()
    said = words[-1].strip(".") if words else ""
    if said == example["answer"]:
        return 1.0, None
    return 0.0, f"the last word should be the sum {example['answer']}, not {said or 'nothing'}"


def fails_when_flagged(example: dict, reply: str) -> bool:
    """Raises on the examples whose ids are listed in the file the example's `flag_file` column names, while that
    file exists (the data carries the path: a Ray worker does not see the test's environment)."""
    flag = Path(example["flag_file"])
    if flag.is_file() and example["id"] in flag.read_text().split():
        raise ValueError(f"cannot read the reply to {example['id']}\nsecond line")
    return example["answer"] in reply


def half_right(example: dict, reply: str) -> float:
    return 0.5


def out_of_range(example: dict, reply: str) -> float:
    return 1.5
