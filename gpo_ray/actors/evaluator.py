"""Evaluator actor: a thin Ray shell that scores (prompt, example) items against the task LLM.

Scores are cached per (metric, prompt, example) in the actor, and LLM replies on disk, so an item
retried after a crash or asked twice costs no second generation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import ray

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.config import LLMRoleConfig
from gpo_ray.core.evaluation import TaskModelParams, grade_example, score_example
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.llm.stack import build_client
from gpo_ray.observability.metrics import MetricsContext, llm_usage_listener
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind, Role


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    example: Example
    metric: MetricKind
    task: str = ""  # the task's name: which second turn it gets (answer_extraction: second_turn)

    @property
    def key(self) -> tuple:
        return (self.metric.value, self.task, self.prompt, self.example.input, self.example.answers)


class Evaluator(WhereAmI):
    def __init__(
        self,
        role: LLMRoleConfig,
        *,
        base_url: str | list[str],
        model: str,
        cache_dir: str | None,
        params: TaskModelParams,
        max_in_flight: int,
        metrics: MetricsContext | None = None,
    ) -> None:
        self.announce_start("evaluator")
        # Metrics are made here, in the worker process; the counters feed them (usage.json and gpo_llm_* agree).
        self.counters = UsageCounters(listener=llm_usage_listener(metrics, role=Role.TASK_MODEL))
        cache = ResponseCache(Path(cache_dir) / Role.TASK_MODEL) if cache_dir else None
        self.llm = build_client(role, role_name=Role.TASK_MODEL, base_url=base_url, model=model, cache=cache,
                                counters=self.counters)
        self.params = params
        self.slots = asyncio.Semaphore(max_in_flight)
        self.scores: dict[tuple, float] = {}

    async def _one(self, item: ScoreItem) -> float:
        if item.key in self.scores:
            return self.scores[item.key]
        async with self.slots:
            value = await score_example(self.llm, item.prompt, item.example, metric=item.metric, params=self.params,
                                        task=item.task)
        self.scores[item.key] = value
        return value

    async def score(self, items: list[ScoreItem]) -> list[float]:
        return list(await asyncio.gather(*(self._one(i) for i in items)))

    async def _one_with_prediction(self, item: ScoreItem) -> tuple[float, str]:
        # Not from the score cache: the answer is needed too (a repeat is a response-cache hit, not a model call).
        async with self.slots:
            value, prediction = await grade_example(self.llm, item.prompt, item.example, metric=item.metric,
                                                    params=self.params, task=item.task)
        self.scores[item.key] = value
        return value, prediction

    async def score_with_predictions(self, items: list[ScoreItem]) -> list[tuple[float, str]]:
        """Scores with the model's answers as the feedback request shows them (the feedback direction)."""
        return list(await asyncio.gather(*(self._one_with_prediction(i) for i in items)))

    async def usage(self) -> dict:
        return self.counters.snapshot()


EvaluatorActor = ray.remote(Evaluator)
