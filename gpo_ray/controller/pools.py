"""The controller's view of the actors: pools with fair sharing and retry on a lost actor.

Written against anything with Ray-like `method.remote(...)` handles, so that the logic can be tested
with plain objects; the end-to-end tests use real actors.

A sweep's sub-runs share one evaluator pool and one refiner pool (`route_by_content`): identical work then goes to
the same actor, whose response cache answers the second sub-run's requests (or lets them join the first one's
request in flight) instead of two actors asking the endpoint at once. Each sub-run sees the pools through a view
(`EvaluatorPoolView`, `RefinerPoolView`) that names its account and how it asks the task model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import structlog

from gpo_ray.actors.evaluator import ScoreItem
from gpo_ray.controller.fair import FairScheduler
from gpo_ray.core.evaluation import Metric, MetricFailure, TaskModelParams
from gpo_ray.core.generation import GenerationRequest, GenerationResult, OptimizerTextRequest, meta_prompt_for
from gpo_ray.observability.metrics import Metrics, NullMetrics
from gpo_ray.tasks.types import Example

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


# One chunk of scoring work: the evaluator method ("score", or "score_with_predictions" for the feedback direction),
# the items, and (sweeps) how the task model is asked and whose usage it is.
ScoreWork = tuple[str, list[ScoreItem], TaskModelParams | None, str | None]


class EvaluatorPool:
    """Spreads (prompt, example) items over evaluator actors in chunks, round-robin across tasks.

    By default any free slot takes the next chunk. With `route_by_content` (a sweep), a chunk goes to the actor its
    content hashes to, each actor with a fair scheduler of its own, so identical chunks of two sub-runs meet in
    one actor's cache."""

    def __init__(self, handles: Sequence[Any], *, chunk_size: int = 4, chunks_in_flight_per_actor: int = 2,
                 metrics: Metrics | None = None, route_by_content: bool = False) -> None:
        self.handles = list(handles)
        self.chunk_size = chunk_size
        self.metrics = metrics or NullMetrics()
        self.outstanding = 0  # (prompt, example) items handed to the pool and not yet scored
        workers = [self._worker(i) for i in range(len(self.handles))]
        groups = [[w] for w in workers] if route_by_content else [workers]
        self.schedulers: list[FairScheduler[ScoreWork, list[Any]]] = [
            FairScheduler(group, slots_per_worker=chunks_in_flight_per_actor) for group in groups
        ]

    def _worker(self, index: int):
        async def run(work: ScoreWork) -> list[Any]:
            method, chunk, params, account = work
            args = (chunk,) if params is None and account is None else (chunk, params, account)
            return await call_with_failover(self.handles, index, method, *args)

        return run

    def _scheduler_for(self, chunk: list[ScoreItem], params: TaskModelParams | None):
        if len(self.schedulers) == 1:
            return self.schedulers[0]
        return self.schedulers[hash((params, *(i.key for i in chunk))) % len(self.schedulers)]

    async def _run_items(self, task: str, method: str, items: list[ScoreItem], *, params: TaskModelParams | None,
                         account: str | None) -> list[Any]:
        chunks = [items[i : i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
        key = task if account is None else f"{account}/{task}"  # fair across tasks, and across sub-runs' tasks
        self._outstanding(len(items))
        try:
            results = await asyncio.gather(*(self._scheduler_for(c, params).submit(key, (method, c, params, account))
                                             for c in chunks))
        finally:
            self._outstanding(-len(items))
        return [s for chunk in results for s in chunk]

    async def score(
        self, task: str, metric: Metric, prompts: Sequence[str], examples: Sequence[Example], *,
        params: TaskModelParams | None = None, account: str | None = None,
    ) -> list[list[float | MetricFailure]]:
        items = [ScoreItem(p, ex, metric, task) for p in prompts for ex in examples]
        flat = await self._run_items(task, "score", items, params=params, account=account)
        n = len(examples)
        return [flat[i * n : (i + 1) * n] for i in range(len(prompts))]

    async def score_with_predictions(
        self, task: str, metric: Metric, prompt: str, examples: Sequence[Example], *,
        params: TaskModelParams | None = None, account: str | None = None,
    ) -> list[tuple[float | MetricFailure, str, str | None]]:
        """Per example (score, the model's answer as shown, the metric's feedback): the feedback direction's scoring of
        the current prompt."""
        items = [ScoreItem(prompt, ex, metric, task) for ex in examples]
        return [(score if isinstance(score, MetricFailure) else float(score), str(answer), feedback)
                for score, answer, feedback in
                await self._run_items(task, "score_with_predictions", items, params=params, account=account)]

    def _outstanding(self, delta: int) -> None:
        self.outstanding += delta
        self.metrics.set("gpo_queue_depth", self.outstanding, pool="evaluator")

    async def close(self) -> None:
        for scheduler in self.schedulers:
            await scheduler.close()


class EvaluatorPoolView:
    """One sweep sub-run's view of the shared evaluator pool: its task-model parameters and its usage account."""

    def __init__(self, pool: EvaluatorPool, *, params: TaskModelParams, account: str) -> None:
        self.pool = pool
        self.params = params
        self.account = account

    async def score(
        self, task: str, metric: Metric, prompts: Sequence[str], examples: Sequence[Example], *,
        params: TaskModelParams | None = None,
    ) -> list[list[float | MetricFailure]]:
        """`params`: a task's own (its placement); else the sub-run's."""
        return await self.pool.score(task, metric, prompts, examples, params=params or self.params,
                                     account=self.account)

    async def score_with_predictions(
        self, task: str, metric: Metric, prompt: str, examples: Sequence[Example], *,
        params: TaskModelParams | None = None,
    ) -> list[tuple[float | MetricFailure, str, str | None]]:
        return await self.pool.score_with_predictions(task, metric, prompt, examples, params=params or self.params,
                                                      account=self.account)

    async def close(self) -> None:
        """The pool is the sweep's: it closes it once every sub-run is done."""


class RefinerPool:
    """Sends each generation request to the refiner with the fewest requests in flight, or (`route_by_content`, a
    sweep) to the one the request's content hashes to."""

    def __init__(self, handles: Sequence[Any], *, metrics: Metrics | None = None,
                 route_by_content: bool = False) -> None:
        self.handles = list(handles)
        self.in_flight = [0] * len(self.handles)
        self.metrics = metrics or NullMetrics()
        self.route_by_content = route_by_content

    def _moved(self, index: int, delta: int) -> None:
        self.in_flight[index] += delta
        self.metrics.set("gpo_queue_depth", sum(self.in_flight), pool="refiner")

    def _index_for(self, content: Any) -> int:
        if self.route_by_content:
            return hash(content) % len(self.handles)
        return min(range(len(self.handles)), key=lambda i: (self.in_flight[i], i))

    async def generate(self, request: GenerationRequest, *, account: str | None = None) -> GenerationResult:
        # What the optimizer requests are made of (core/generation.py): text, sampling, and the seed's inputs.
        content = (meta_prompt_for(request), request.temperature, request.max_tokens, request.seed, request.task,
                   request.step, request.n, request.structured, request.enforcement) if self.route_by_content else None
        return await self._call("generate", request, content=content, account=account)

    async def ask(self, request: OptimizerTextRequest, *, account: str | None = None) -> str:
        """One feedback or summarize request (core/variants.py): the optimizer's raw reply."""
        return await self._call("ask", request, content=request, account=account)

    async def _call(self, method: str, request: Any, *, content: Any, account: str | None) -> Any:
        index = self._index_for(content)
        args = (request,) if account is None else (request, account)
        self._moved(index, 1)
        try:
            return await call_with_failover(self.handles, index, method, *args)
        finally:
            self._moved(index, -1)


class RefinerPoolView:
    """One sweep sub-run's view of the shared refiner pool: its usage account."""

    def __init__(self, pool: RefinerPool, *, account: str) -> None:
        self.pool = pool
        self.account = account

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.pool.generate(request, account=self.account)

    async def ask(self, request: OptimizerTextRequest) -> str:
        return await self.pool.ask(request, account=self.account)
