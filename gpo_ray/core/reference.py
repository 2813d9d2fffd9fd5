"""The sequential reference optimizer: the whole GPO loop in one process.

It is the baseline the distributed system must agree with (same seed, same deterministic endpoint)
and must beat on wall-clock time. It takes an async LLM client per role and an embedder, no Ray.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.evaluation import (
    Judge,
    MetricFailure,
    TaskModelParams,
    grade_examples,
    score_examples,
)
from gpo_ray.core.generation import (
    GenerationRequest,
    GenerationResult,
    OptimizerTextRequest,
    ask_optimizer,
    generate_candidates,
)
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.results import StepResult, TaskResult
from gpo_ray.core.retrieval import DEFAULT_ORDER, retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.llm.protocol import LLMClient
from gpo_ray.tasks.types import Example, Task


class InProcessServices:
    """TaskServices with everything local: retrieval over an in-memory trajectory, direct LLM calls."""

    def __init__(
        self,
        *,
        optimizer_llm: LLMClient,
        task_llm: LLMClient,
        embed: Callable[[Sequence[str]], Sequence[Sequence[float]]] | None,
        task_params: TaskModelParams,
        on_step: Callable[[Task, StepResult], Any] | None = None,
        judge_with: Judge | None = None,
    ) -> None:
        self.optimizer_llm = optimizer_llm
        self.judge_with = judge_with  # the judge model, for a task whose metric is `kind: judge`
        self.task_llm = task_llm
        self.embed_fn = embed
        self.task_params = task_params
        self.on_step = on_step
        self._vectors: dict[str, Sequence[float]] = {}

    async def retrieve(
        self, task: Task, trajectory: Sequence[TrajectoryEntry], *, strategy: str, k: int,
        order: str = DEFAULT_ORDER,
    ) -> list[TrajectoryEntry]:
        vectors = None
        if strategy == "relevance":
            if self.embed_fn is None:
                raise ValueError("relevance retrieval needs an embedder")
            missing = [e.prompt for e in trajectory if e.prompt not in self._vectors]
            if missing:
                new = await asyncio.to_thread(self.embed_fn, missing)
                self._vectors.update(zip(missing, new, strict=True))
            vectors = [self._vectors[e.prompt] for e in trajectory]
        return retrieve(trajectory, strategy=strategy, k=k, vectors=vectors, order=order)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await generate_candidates(self.optimizer_llm, request)

    def _params(self, task: Task) -> TaskModelParams:
        """The run's task-model parameters, with the task's own prompt placement where its source sets one."""
        return self.task_params if task.placement is None else replace(self.task_params, placement=task.placement)

    async def score(self, task: Task, prompts: Sequence[str], examples: Sequence[Example]
                    ) -> list[list[float | MetricFailure]]:
        return list(
            await asyncio.gather(
                *(score_examples(self.task_llm, p, examples, metric=task.metric, params=self._params(task),
                                 task=task.name, judge_with=self.judge_with)
                  for p in prompts)
            )
        )

    async def score_with_predictions(
        self, task: Task, prompt: str, examples: Sequence[Example]
    ) -> list[tuple[float | MetricFailure, str, str | None]]:
        return await grade_examples(self.task_llm, prompt, examples, metric=task.metric, params=self._params(task),
                                    task=task.name, judge_with=self.judge_with)

    async def ask_optimizer(self, request: OptimizerTextRequest) -> str:
        return await ask_optimizer(self.optimizer_llm, request)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if self.embed_fn is None:
            raise ValueError("relevance selection needs an embedder")
        return [list(v) for v in await asyncio.to_thread(self.embed_fn, list(texts))]

    async def step_done(self, task: Task, record: StepResult) -> None:
        if self.on_step is not None:
            self.on_step(task, record)

    def should_stop(self) -> bool:
        return False


async def optimize_sequential(
    tasks: Sequence[Task],
    *,
    settings: OptimizerSettings,
    optimizer_llm: LLMClient,
    task_llm: LLMClient,
    embed: Callable[[Sequence[str]], Sequence[Sequence[float]]] | None,
    task_params: TaskModelParams,
    structured: bool = False,
    optimizer_temperature: float = 1.0,
    optimizer_max_tokens: int | None = None,
) -> dict[str, TaskResult]:
    """Optimize each task in turn, one LLM call path, no parallelism across tasks."""
    services = InProcessServices(
        optimizer_llm=optimizer_llm, task_llm=task_llm, embed=embed, task_params=task_params
    )
    results: dict[str, TaskResult] = {}
    for task in tasks:
        loop = GPOTaskLoop(
            task,
            settings=settings,
            services=services,
            structured=structured,
            optimizer_temperature=optimizer_temperature,
            optimizer_max_tokens=optimizer_max_tokens,
        )
        results[task.name] = await loop.run()
    return results
