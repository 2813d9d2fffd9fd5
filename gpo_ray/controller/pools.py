"""The controller's view of the actors: pools with fair sharing and retry on a lost actor.

Written against anything with Ray-like `method.remote(...)` handles, so that the logic can be tested
with plain objects; the end-to-end tests use real actors.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from gpo_ray.actors.evaluator import ScoreItem
from gpo_ray.controller.fair import FairScheduler
from gpo_ray.core.generation import GenerationRequest, GenerationResult, OptimizerTextRequest
from gpo_ray.observability.metrics import Metrics, NullMetrics
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

log = structlog.get_logger()


def _is_actor_loss(exc: BaseException) -> bool:
    try:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, (RayActorError, ActorDiedError, ActorUnavailableError))


async def call_with_failover(handles: Sequence[Any], first: int, method: str, *args: Any, attempts: int = 3) -> Any:
    """Call `method` on handles[first]; if that actor is lost for good, try the next ones.

    Ray already retries a call on a restarted actor (max_task_retries); this covers an actor (or its
    node) that is gone. The calls are idempotent, so a repeat costs at most a cache hit.
    """
    last: BaseException | None = None
    for i in range(attempts):
        handle = handles[(first + i) % len(handles)]
        try:
            return await getattr(handle, method).remote(*args)
        except Exception as e:  # noqa: BLE001
            if not _is_actor_loss(e):
                raise
            last = e
            log.warning("actor_lost_retrying", method=method, attempt=i + 1, error=type(e).__name__)
            await asyncio.sleep(0.2 * (i + 1))
    assert last is not None
    raise last


class EvaluatorPool:
    """Spreads (prompt, example) items over evaluator actors in chunks, round-robin across tasks."""

    def __init__(self, handles: Sequence[Any], *, chunk_size: int = 4, chunks_in_flight_per_actor: int = 2,
                 metrics: Metrics | None = None) -> None:
        self.handles = list(handles)
        self.chunk_size = chunk_size
        self.metrics = metrics or NullMetrics()
        self.outstanding = 0  # (prompt, example) items handed to the pool and not yet scored
        workers = [self._worker(i) for i in range(len(self.handles))]
        # A job is (evaluator method, chunk): "score", or "score_with_predictions" for the feedback direction.
        self.scheduler: FairScheduler[tuple[str, list[ScoreItem]], list[Any]] = FairScheduler(
            workers, slots_per_worker=chunks_in_flight_per_actor
        )

    def _worker(self, index: int):
        async def run(job: tuple[str, list[ScoreItem]]) -> list[Any]:
            method, chunk = job
            return await call_with_failover(self.handles, index, method, chunk)

        return run

    async def _run_items(self, task: str, method: str, items: list[ScoreItem]) -> list[Any]:
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        self._outstanding(len(items))
        try:
            results = await asyncio.gather(*(self.scheduler.submit(task, (method, c)) for c in chunks))
        finally:
            self._outstanding(-len(items))
        return [s for chunk in results for s in chunk]

    async def score(
        self, task: str, metric: MetricKind, prompts: Sequence[str], examples: Sequence[Example]
    ) -> list[list[float]]:
        items = [ScoreItem(p, ex, metric, task) for p in prompts for ex in examples]
        flat = await self._run_items(task, "score", items)
        n = len(examples)
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    async def score_with_predictions(
        self, task: str, metric: MetricKind, prompt: str, examples: Sequence[Example]
    ) -> list[tuple[float, str]]:
        """Per example (score, the model's answer as shown): the feedback direction's scoring of the current prompt."""
        items = [ScoreItem(prompt, ex, metric, task) for ex in examples]
        return [(float(score), str(answer)) for score, answer in
                await self._run_items(task, "score_with_predictions", items)]

    def _outstanding(self, delta: int) -> None:
        self.outstanding += delta
        self.metrics.set("gpo_queue_depth", self.outstanding, pool="evaluator")

    async def close(self) -> None:
        await self.scheduler.close()


class RefinerPool:
    """Sends each generation request to the refiner with the fewest requests in flight."""

    def __init__(self, handles: Sequence[Any], *, metrics: Metrics | None = None) -> None:
        self.handles = list(handles)
        self.in_flight = [0] * len(self.handles)
        self.metrics = metrics or NullMetrics()

    def _moved(self, index: int, delta: int) -> None:
        self.in_flight[index] += delta
        self.metrics.set("gpo_queue_depth", sum(self.in_flight), pool="refiner")

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self._call("generate", request)

    async def ask(self, request: OptimizerTextRequest) -> str:
        """One feedback or summarize request (core/variants.py): the optimizer's raw reply."""
        return await self._call("ask", request)

    async def _call(self, method: str, request: Any) -> Any:
        index = min(range(len(self.handles)), key=lambda i: (self.in_flight[i], i))
        self._moved(index, 1)
        try:
            return await call_with_failover(self.handles, index, method, request)
        finally:
            self._moved(index, -1)
