"""Config names -> design-space objects: the one place that reads optimizer.meta_prompt_style, direction,
momentum, update and the budget and retrieval settings, and hands the loop, the actor services and `plan` the
objects that answer for them.

A registry is a value: `DEFAULT_REGISTRY` holds the built-in kinds, and `with_momentum` (`with_direction`) returns
a new registry with one more, for a caller to pass to `GPOTaskLoop` and `plan_task` (`registry=`). A kind that a
config file names also needs its name among the schema's values (config/schema.py). Styles are the built-in ones
only (style.STYLES): the candidates' meta-prompt is rendered by the style's name where the request is served, in
the refiner actors too (core/generation.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.design.budget import EditBudget
from gpo_ray.core.design.direction import Direction, FeedbackDirection, NoDirection
from gpo_ray.core.design.method import METHODS, StepMethod
from gpo_ray.core.design.momentum import (
    Momentum,
    NoMomentum,
    RetrievedFeedback,
    RetrievedPrompts,
    SummarizedFeedback,
    SummarizedPrompts,
)
from gpo_ray.core.design.retrieval import Retrieval
from gpo_ray.core.design.style import STYLES, MetaPromptStyle
from gpo_ray.core.design.update import UpdateMethod


@dataclass(frozen=True)
class DesignSpace:
    """One run's point in the paper's design space: an object per axis."""

    style: MetaPromptStyle
    direction: Direction
    momentum: Momentum
    update: UpdateMethod
    budget: EditBudget
    retrieval: Retrieval
    # optimizer.method ape | apo | opro: the rival method that runs each step (core/design/method.py); None: GPO's
    # step from the axes above (method gpo, and pe2, a point of them).
    method: StepMethod | None = None

    @property
    def step_retrieval(self) -> Retrieval | None:
        """What every step retrieves from the trajectory memory (None: nothing)."""
        return self.momentum.retrieval(self.retrieval)


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class DesignRegistry:
    styles: Mapping[str, MetaPromptStyle]
    directions: Mapping[str, Direction]
    momenta: Mapping[tuple[str, str], Momentum]  # (momentum.content, momentum.update) -> kind
    update_methods: Mapping[str, UpdateMethod] = field(
        default_factory=lambda: _frozen({u.name: u for u in (UpdateMethod("generate"), UpdateMethod("edit"))}))
    methods: Mapping[str, StepMethod] = field(default_factory=lambda: _frozen(METHODS))

    def with_momentum(self, *, content: str, update: str, kind: Momentum) -> DesignRegistry:
        """This registry and one more momentum kind, under (momentum.content, momentum.update)."""
        return DesignRegistry(self.styles, self.directions, _frozen({**self.momenta, (content, update): kind}),
                              self.update_methods, self.methods)

    def with_direction(self, name: str, direction: Direction) -> DesignRegistry:
        return DesignRegistry(self.styles, _frozen({**self.directions, name: direction}), self.momenta,
                              self.update_methods, self.methods)

    def style(self, name: str) -> MetaPromptStyle:
        return _named(self.styles, name, "meta_prompt_style")

    def design_for(self, settings: OptimizerSettings) -> DesignSpace:
        m = settings.momentum
        return DesignSpace(
            style=self.style(settings.meta_prompt_style),
            direction=_named(self.directions, settings.direction, "direction"),
            momentum=_named(self.momenta, (m.content, m.update), "momentum"),
            update=_named(self.update_methods, settings.update, "update"),
            budget=EditBudget.of(settings),
            retrieval=Retrieval.of(settings),
            method=self.methods.get(settings.method),
        )


def _named(kinds: Mapping, name: object, axis: str):
    try:
        return kinds[name]
    except KeyError:
        raise ValueError(f"optimizer.{axis}: no kind {name!r} is registered") from None


DEFAULT_REGISTRY = DesignRegistry(
    styles=STYLES,
    directions=_frozen({d.name: d for d in (NoDirection(), FeedbackDirection())}),
    momenta=_frozen({
        ("prompts", "retrieve"): RetrievedPrompts(),
        ("prompts", "summarize"): SummarizedPrompts(),
        ("feedback", "retrieve"): RetrievedFeedback(),
        ("feedback", "summarize"): SummarizedFeedback(),
        ("none", "retrieve"): NoMomentum(),
    }),
)


def design_for(settings: OptimizerSettings) -> DesignSpace:
    """The built-in objects for a run's settings."""
    return DEFAULT_REGISTRY.design_for(settings)
