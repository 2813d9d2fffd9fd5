"""Task data as immutable values that travel between processes."""

from __future__ import annotations

from dataclasses import dataclass

from gpo_ray.vocabulary import MetricKind


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
