"""The paper's design space as objects: one module per axis (style, direction, momentum, update, budget,
retrieval), each rendering its part of the optimizer's requests, making its extra calls through the step's context
(step.py) and counting them for `plan`; registry.py maps the config's names to them. method.py: the rival optimizers
(optimizer.method ape | apo | opro), one step object beside the axes."""

from gpo_ray.core.design.registry import (
    DEFAULT_REGISTRY,
    DesignRegistry,
    DesignSpace,
    design_for,
)
from gpo_ray.core.design.retrieval import Retrieval
from gpo_ray.core.design.step import StepContext, StepView

__all__ = ["DEFAULT_REGISTRY", "DesignRegistry", "DesignSpace", "Retrieval", "StepContext", "StepView", "design_for"]
