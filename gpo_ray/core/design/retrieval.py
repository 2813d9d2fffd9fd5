"""The retrieval axis: which past prompts a step asks the trajectory for (optimizer.retrieval, retrieval_k,
retrieval_order). The algorithm is core/retrieval.py; this is the choice, in one form, that the loop, the actor
services (which ask it together with the previous step's memory write) and the plan share."""

from __future__ import annotations

from dataclasses import dataclass

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.retrieval import DEFAULT_ORDER


@dataclass(frozen=True)
class Retrieval:
    """What a step retrieves: `k` trajectory entries chosen by `strategy`, shown in `order`."""

    strategy: str
    k: int
    order: str = DEFAULT_ORDER

    @classmethod
    def of(cls, settings: OptimizerSettings) -> Retrieval:
        return cls(settings.retrieval, settings.retrieval_k, settings.retrieval_order)

    @property
    def embeds(self) -> bool:
        """Whether choosing needs embedding vectors (relevance)."""
        return self.strategy == "relevance"
