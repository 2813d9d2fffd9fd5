"""Task data as immutable values that travel between processes."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class MetricKind(str, Enum):
    MULTIPLE_CHOICE = "multiple_choice"  # option letter (A), (B), ...
    EXACT_MATCH = "exact_match"  # BBH free-form answers
    NUMERIC = "numeric"  # GSM8K: last number in the output
    ROUGE_L = "rouge_l"  # WebNLG: ROUGE-L F against the best reference


class PromptPlacement(str, Enum):
    END = "end"  # after the question (the paper's default)
    BEGINNING = "beginning"  # before the question
    SYSTEM = "system"  # as the system message


@dataclass(frozen=True)
class Example:
    input: str
    answers: tuple[str, ...]  # one reference, or several (WebNLG)
    id: str = ""  # stable within a task split, e.g. "eval:17"

    @property
    def answer(self) -> str:
        return self.answers[0]


@dataclass(frozen=True)
class Task:
    name: str  # e.g. "bbh/navigate"
    metric: MetricKind
    train: tuple[Example, ...]
    eval: tuple[Example, ...]
    test: tuple[Example, ...]
    format_examples: tuple[Example, ...] = ()
    few_shot_examples: tuple[Example, ...] = ()
