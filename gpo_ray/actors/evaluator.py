"""Evaluator actor: a thin Ray shell that scores (prompt, example) items against the task LLM.

Scores are cached per (metric, prompt, example) in the actor, and LLM replies on disk, so an item
retried after a crash or asked twice costs no second generation. A task's Python metric runs here, where the replies
arrive; an example it could not score comes back as a `MetricFailure` (not cached: a repeat reports it again). The sub-runs of a sweep share these actors: each
call may name how the task model is asked (`params`) and whose usage it is (`account`); an account's scores are
its own, so what another sub-run already scored reaches it as response-cache hits, counted for it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import ray

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.config import LLMRoleConfig, PythonMetric
from gpo_ray.core.evaluation import (
    Judge,
    Metric,
    MetricFailure,
    TaskModelParams,
    grade_example,
    score_example,
)
from gpo_ray.llm.accounting import CURRENT_ACCOUNT, AccountedCounters
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.llm.run_limits import PermitSource
from gpo_ray.llm.stack import build_client
from gpo_ray.observability.metrics import MetricsContext, llm_usage_listener
from gpo_ray.tasks.judge import JudgeParams
from gpo_ray.tasks.metric_specs import metric_key
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import Role


@dataclass(frozen=True)
class JudgeEndpoint:
    """Where and how the judge model of a run with a `kind: judge` metric is asked (config.judge_model)."""

    role: LLMRoleConfig
    base_url: str | list[str]
    model: str
    params: JudgeParams


@dataclass(frozen=True)
class ScoreItem:
    prompt: str
    example: Example
    metric: Metric
    task: str = ""  # the task's name: which second turn it gets (answer_extraction: second_turn)

    @property
    def key(self) -> tuple:
        # A Python metric may read the example's other columns (Example.fields, not hashable): its id stands for them.
        return (metric_key(self.metric), self.task, self.prompt, self.example.input, self.example.answers,
                self.example.id if isinstance(self.metric, PythonMetric) else "")


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
        permits: PermitSource | None = None,
        judge: JudgeEndpoint | None = None,
        callers: int = 1,
        judge_callers: int | None = None,
    ) -> None:
        """`max_in_flight`: examples scored at once; `callers`: the clients that share each task-model endpoint's cap
        of requests in flight (the role's max_in_flight), this one included (llm/stack.py); `judge_callers` the same
        for the judge's endpoints (default `callers`)."""
        self.announce_start("evaluator")
        # Metrics are made here, in the worker process; the counters feed them (usage.json and gpo_llm_* agree).
        self.counters = AccountedCounters(listener=llm_usage_listener(metrics, role=Role.TASK_MODEL))
        cache = ResponseCache(Path(cache_dir) / Role.TASK_MODEL) if cache_dir else None
        self.llm = build_client(role, role_name=Role.TASK_MODEL, base_url=base_url, model=model, cache=cache,
                                counters=self.counters, permits=permits, callers=callers)
        # The judge of a `kind: judge` metric: its own stack, cache folder and counters (usage.json's `judge`).
        self.judge_counters = AccountedCounters(
            listener=llm_usage_listener(metrics, role=Role.JUDGE) if judge is not None else None)
        self.judge: Judge | None = None
        if judge is not None:
            judge_cache = ResponseCache(Path(cache_dir) / Role.JUDGE) if cache_dir else None
            self.judge = Judge(build_client(judge.role, role_name=Role.JUDGE, base_url=judge.base_url,
                                            model=judge.model, cache=judge_cache, counters=self.judge_counters,
                                            permits=permits, callers=judge_callers or callers), judge.params)
        self.params = params
        self.slots = asyncio.Semaphore(max_in_flight)
        self.scores: dict[tuple, float] = {}

    async def _one(self, item: ScoreItem, params: TaskModelParams, account: str | None) -> float | MetricFailure:
        key = (account, params, *item.key)
        if key in self.scores:
            return self.scores[key]
        async with self.slots:
            value = await score_example(self.llm, item.prompt, item.example, metric=item.metric, params=params,
                                        task=item.task, judge_with=self.judge)
        if not isinstance(value, MetricFailure):
            self.scores[key] = value
        return value

    async def score(self, items: list[ScoreItem], params: TaskModelParams | None = None,
                    account: str | None = None) -> list[float | MetricFailure]:
        CURRENT_ACCOUNT.set(account)  # this call's task (and the tasks gathered below) count for `account`
        params = params or self.params
        return list(await asyncio.gather(*(self._one(i, params, account) for i in items)))

    async def _one_with_prediction(self, item: ScoreItem, params: TaskModelParams, account: str | None
                                   ) -> tuple[float | MetricFailure, str, str | None]:
        # Not from the score cache: the answer is needed too (a repeat is a response-cache hit, not a model call).
        async with self.slots:
            graded = await grade_example(self.llm, item.prompt, item.example, metric=item.metric, params=params,
                                         task=item.task, judge_with=self.judge)
        if not isinstance(graded[0], MetricFailure):
            self.scores[(account, params, *item.key)] = graded[0]
        return graded

    async def score_with_predictions(self, items: list[ScoreItem], params: TaskModelParams | None = None,
                                     account: str | None = None) -> list[tuple[float | MetricFailure, str, str | None]]:
        """Scores with the model's answers as the feedback request shows them and the metric's feedback (the
        feedback direction)."""
        CURRENT_ACCOUNT.set(account)
        params = params or self.params
        return list(await asyncio.gather(*(self._one_with_prediction(i, params, account) for i in items)))

    async def usage(self, account: str | None = None) -> dict:
        return self.counters.snapshot_of(account)

    async def judge_usage(self, account: str | None = None) -> dict:
        """The judge model's usage (empty counters in a run without a judge metric)."""
        return self.judge_counters.snapshot_of(account)


EvaluatorActor = ray.remote(Evaluator)
