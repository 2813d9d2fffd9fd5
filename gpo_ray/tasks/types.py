"""Task data as immutable values that travel between processes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpo_ray.config import ChecksMetric, PythonMetric
from gpo_ray.vocabulary import MetricKind, PromptPlacement


@dataclass(frozen=True)
class Example:
    input: str
    answers: tuple[str, ...]  # one reference, several (WebNLG), or none (a task scored by a judge or a function)
    id: str = ""  # stable within a task split, e.g. "eval:17", or the source's id_field
    # The row's columns as read: what a user's metric function may look at beside the answer. Not part of equality
    # or hashing (values may be lists); a Python metric's score-cache key adds the example's id instead.
    fields: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

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
    placement: PromptPlacement | None = None  # where this task's prompt goes; None: the run's optimizer.placement
