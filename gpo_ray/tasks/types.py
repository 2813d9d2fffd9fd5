"""Task data as immutable values that travel between processes."""

from __future__ import annotations

from dataclasses import dataclass, field

from gpo_ray.config import ChecksMetric, PythonMetric
from gpo_ray.vocabulary import MetricKind


@dataclass(frozen=True)
class Example:
    input: str
    answers: tuple[str, ...]  # one reference, or several (WebNLG)
    id: str = ""  # stable within a task split, e.g. "eval:17"
    # The data file's other columns as a JSON object's text (a Python metric gets them); "" when there are none.
    extra: str = field(default="", compare=False)

    @property
    def answer(self) -> str:
        return self.answers[0]


@dataclass(frozen=True)
class Task:
    name: str  # e.g. "bbh/navigate"
    metric: MetricKind | PythonMetric | ChecksMetric  # a built-in kind or a task source's spec
    train: tuple[Example, ...]
    eval: tuple[Example, ...]
    test: tuple[Example, ...]
    format_examples: tuple[Example, ...] = ()
    few_shot_examples: tuple[Example, ...] = ()
