"""The meta-prompt style axis (optimizer.meta_prompt_style): the words of every optimizer request.

`own` is gpo-ray's template (core/meta_prompt.py, core/variants.py; optimizer.meta_prompt overrides it), `paper` the
official GPO text byte for byte (core/paper_meta_prompt.py). A style renders the candidates' meta-prompt and the
extra requests the other axes make (feedback, summaries); the other axes never ask which style is in force."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

from gpo_ray.config import MetaPromptTemplate
from gpo_ray.core.meta_prompt import DEFAULT_TEMPLATE, build_meta_prompt
from gpo_ray.core.paper_meta_prompt import (
    build_paper_feedback_request,
    build_paper_meta_prompt,
    build_paper_summarize_feedback_request,
    build_paper_summarize_prompts_request,
)
from gpo_ray.core.types import TrajectoryEntry, WrongExample
from gpo_ray.core.variants import (
    build_feedback_request,
    build_summarize_feedback_request,
    build_summarize_prompts_request,
)
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement


@dataclass(frozen=True)
class MetaPromptParts:
    """What one candidates' meta-prompt shows: the state of the step, and what the other axes put in it."""

    current_prompt: str
    retrieved: Sequence[TrajectoryEntry]
    format_examples: Sequence[Example]
    edit_budget: int
    placement: PromptPlacement
    structured: bool
    template: MetaPromptTemplate = DEFAULT_TEMPLATE
    current_score: float | str | None = None
    update: str = "generate"
    budget_in_prompt: bool = True
    gradient: str | None = None
    previous: TrajectoryEntry | None = None


class MetaPromptStyle(Protocol):
    name: str

    def meta_prompt(self, parts: MetaPromptParts) -> str: ...

    def feedback_request(self, *, current_prompt: str, wrong: Sequence[WrongExample],
                         template: MetaPromptTemplate) -> str: ...

    def summarize_prompts_request(self, *, previous: TrajectoryEntry, current: TrajectoryEntry,
                                  template: MetaPromptTemplate) -> str: ...

    def summarize_feedback_request(self, *, previous: str, current: str, template: MetaPromptTemplate) -> str: ...

    def placement_problem(self, placement: PromptPlacement) -> str | None:
        """Why the style cannot place a task's prompt there, or None when it can."""
        ...


@dataclass(frozen=True)
class OwnStyle:
    name: str = "own"

    def meta_prompt(self, parts: MetaPromptParts) -> str:
        return build_meta_prompt(
            current_prompt=parts.current_prompt, retrieved=parts.retrieved, format_examples=parts.format_examples,
            edit_budget=parts.edit_budget, placement=parts.placement, structured=parts.structured,
            template=parts.template, update=parts.update, budget_in_prompt=parts.budget_in_prompt,
            gradient=parts.gradient, previous=parts.previous,
        )

    def feedback_request(self, *, current_prompt: str, wrong: Sequence[WrongExample],
                         template: MetaPromptTemplate) -> str:
        return build_feedback_request(current_prompt=current_prompt, wrong=wrong, template=template)

    def summarize_prompts_request(self, *, previous: TrajectoryEntry, current: TrajectoryEntry,
                                  template: MetaPromptTemplate) -> str:
        return build_summarize_prompts_request(previous=previous, current=current, template=template)

    def summarize_feedback_request(self, *, previous: str, current: str, template: MetaPromptTemplate) -> str:
        return build_summarize_feedback_request(previous=previous, current=current, template=template)

    def placement_problem(self, placement: PromptPlacement) -> str | None:
        return None


@dataclass(frozen=True)
class PaperStyle:
    """The official text: no template overrides, no structured output, no system placement (config validates the
    run's own settings; `placement_problem` a task's own placement)."""

    name: str = "paper"

    def meta_prompt(self, parts: MetaPromptParts) -> str:
        return build_paper_meta_prompt(
            current_prompt=parts.current_prompt, retrieved=parts.retrieved, format_examples=parts.format_examples,
            edit_budget=parts.edit_budget, placement=parts.placement, current_score=parts.current_score,
            update=parts.update, budget_in_prompt=parts.budget_in_prompt, gradient=parts.gradient,
            previous=parts.previous,
        )

    def feedback_request(self, *, current_prompt: str, wrong: Sequence[WrongExample],
                         template: MetaPromptTemplate) -> str:
        return build_paper_feedback_request(current_prompt=current_prompt, wrong=wrong)

    def summarize_prompts_request(self, *, previous: TrajectoryEntry, current: TrajectoryEntry,
                                  template: MetaPromptTemplate) -> str:
        return build_paper_summarize_prompts_request(previous=previous, current=current)

    def summarize_feedback_request(self, *, previous: str, current: str, template: MetaPromptTemplate) -> str:
        return build_paper_summarize_feedback_request(previous=previous, current=current)

    def placement_problem(self, placement: PromptPlacement) -> str | None:
        if PromptPlacement(placement) is PromptPlacement.SYSTEM:
            return "meta_prompt_style paper has no system placement (the official code has Q_end, Q_begin)"
        return None


# The built-in styles by their config names (read-only; a registry of more: design/registry.py).
STYLES: Mapping[str, MetaPromptStyle] = MappingProxyType({s.name: s for s in (OwnStyle(), PaperStyle())})
