"""TaskServices backed by actors: memory for retrieval, refiners for generation, the evaluator pool for scores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from gpo_ray.core.design import Retrieval
from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.core.evaluation import MetricFailure, TaskModelParams
from gpo_ray.core.generation import (
    GenerationRequest,
    GenerationResult,
    OptimizerTextRequest,
)
from gpo_ray.core.results import StepResult
from gpo_ray.core.retrieval import retrieve_unselected, selects
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import RunFailed, error_line
from gpo_ray.memory.store import MemoryRecord
from gpo_ray.tasks.types import Example, Task

if TYPE_CHECKING:
    from gpo_ray.actors.memory_shards import ShardedMemory


def memory_records(task: str, record: StepResult, *, parent: str) -> list[MemoryRecord]:
    """A step as memory rows: the prompt it moved to, and every scored candidate."""
    kind = "initial" if record.step == 0 else "chosen"
    rows = [
        MemoryRecord(task=task, step=record.step, prompt=record.prompt, score=record.eval_score, kind=kind,
                     parent=parent, edit_distance=word_edit_distance(parent, record.prompt) if parent else 0,
                     edit_budget=record.edit_budget, chosen=True)
    ]
    rows += [
        MemoryRecord(task=task, step=record.step, prompt=c.prompt, score=c.score, kind="candidate", parent=parent,
                     edit_distance=c.edit_distance, edit_budget=record.edit_budget, chosen=c.prompt == record.prompt)
        for c in record.candidates
    ]
    return rows


class Refiners(Protocol):
    """The refiner pool, or a sweep sub-run's view of the shared one (controller/pools.py)."""

    async def generate(self, request: GenerationRequest) -> GenerationResult: ...


class Evaluators(Protocol):
    """The evaluator pool, or a sweep sub-run's view of the shared one (controller/pools.py)."""

    async def score(self, task: str, metric: Any, prompts: Sequence[str], examples: Sequence[Example], *,
                    params: TaskModelParams | None = None) -> list[list[float | MetricFailure]]: ...


# What a task's memory write gives back: (the step it stored, the retrieval asked with it, what that retrieved),
# or None when no retrieval was asked.
Written = tuple[int, Retrieval, list[TrajectoryEntry]] | None


class ActorServices:
    """The loop's services over the actors.

    Memory (`ShardedMemory`) is off the loop's way where it can be: a step's write is started, not awaited (the
    checkpoint, written first, is the truth; `remember` re-adds restored steps on resume). A task's writes go in
    order, and the next call that needs the memory - a retrieval that selects, the task's end (`settle`) - waits
    for them; a failed write stops the run there, or at the task's next step. A retrieval that does not select (at
    most k entries, core/retrieval.py) is answered here from the loop's trajectory. When the next step's retrieval
    selects, the write carries it (`add_and_retrieve`): one round trip per step."""

    def __init__(
        self,
        *,
        memory: ShardedMemory,
        refiners: Refiners,
        evaluators: Evaluators,
        on_step: Callable[[Task, StepResult], Awaitable[None]],
        should_stop: Callable[[], bool],
        run_dir: str,
        retrieval: Retrieval | None = None,  # what every step retrieves (the run's DesignSpace.step_retrieval)
        memory_namespace: str = "",
        task_params: TaskModelParams | None = None,
    ) -> None:
        self.memory = memory
        self.refiners = refiners
        self.evaluators = evaluators
        self._on_step = on_step
        self._should_stop = should_stop
        self._run_dir = run_dir
        # A sweep's sub-runs share one memory actor: each keeps its trajectories under its own prefix.
        self._memory_namespace = memory_namespace
        self._retrieval = retrieval
        # The run's task-model parameters: a task whose source sets its own placement is scored with them changed.
        self._task_params = task_params
        self._last_prompt: dict[str, str] = {}
        self._writes: dict[str, asyncio.Future[Written]] = {}  # task -> its last memory write (after the others)

    def _memory_key(self, task: str) -> str:
        return self._memory_namespace + task

    async def retrieve(
        self, task: Task, trajectory: Sequence[TrajectoryEntry], *, strategy: str, k: int, order: str,
    ) -> list[TrajectoryEntry]:
        here = retrieve_unselected(trajectory, strategy=strategy, k=k, order=order)
        if here is not None:
            return here
        ready = await self.settle(task.name)
        if ready is not None and trajectory and ready[0] == trajectory[-1].step and ready[1] == Retrieval(
                strategy, k, order):
            return ready[2]
        return await self.memory.retrieve(self._memory_key(task.name), strategy=strategy, k=k, order=order)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.refiners.generate(request)

    def _placed(self, task: Task) -> dict[str, TaskModelParams]:
        """The `params` of a task whose own placement differs from the run's; none for every other task, whose
        evaluators use the run's."""
        base = self._task_params
        if task.placement is None or base is None or task.placement == base.placement:
            return {}
        return {"params": replace(base, placement=task.placement)}

    async def score(self, task: Task, prompts: Sequence[str], examples: Sequence[Example]
                    ) -> list[list[float | MetricFailure]]:
        return await self.evaluators.score(task.name, task.metric, prompts, examples, **self._placed(task))

    async def score_with_predictions(
        self, task: Task, prompt: str, examples: Sequence[Example]
    ) -> list[tuple[float | MetricFailure, str, str | None]]:
        return await self.evaluators.score_with_predictions(task.name, task.metric, prompt, examples,
                                                            **self._placed(task))

    async def ask_optimizer(self, request: OptimizerTextRequest) -> str:
        return await self.refiners.ask(request)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.memory.embed(list(texts))

    async def remember(self, task: str, records: Sequence[StepResult]) -> None:
        """Re-add restored steps (idempotent upserts), so memory matches the checkpoints after a resume."""
        rows: list[MemoryRecord] = []
        parent = ""
        for r in records:
            rows += memory_records(self._memory_key(task), r, parent=parent)
            parent = r.prompt
        if rows:
            self._write(task, rows, step=records[-1].step)
        if records:
            self._last_prompt[task] = records[-1].prompt

    async def step_done(self, task: Task, record: StepResult) -> None:
        # Checkpoint first: it is the source of truth; memory is re-filled from it on resume.
        await self._on_step(task, record)
        parent = self._last_prompt.get(task.name, "")
        self._write(task.name, memory_records(self._memory_key(task.name), record, parent=parent), step=record.step)
        self._last_prompt[task.name] = record.prompt

    def _write(self, task: str, rows: list[MemoryRecord], *, step: int) -> None:
        """Start storing `rows` (the task's steps up to `step`) after the task's earlier writes; with the next
        step's retrieval when that one selects. A failed earlier write stops the run here."""
        before = self._writes.get(task)
        if before is not None and before.done() and not before.cancelled() and before.exception() is not None:
            raise before.exception()  # type: ignore[misc]
        r = self._retrieval
        # After `step`, the trajectory holds steps 0..step: step + 1 entries.
        ask = r if r is not None and selects(step + 1, strategy=r.strategy, k=r.k, order=r.order) else None
        self._writes[task] = asyncio.ensure_future(self._store(task, rows, step=step, retrieval=ask, before=before))

    async def _store(self, task: str, rows: list[MemoryRecord], *, step: int, retrieval: Retrieval | None,
                     before: asyncio.Future[Written] | None) -> Written:
        if before is not None:
            await before  # in order; a failed one stops this one with its own message
        try:
            if retrieval is None:
                await self.memory.add(rows)
                return None
            retrieved = await self.memory.add_and_retrieve(self._memory_key(task), rows, strategy=retrieval.strategy,
                                                           k=retrieval.k, order=retrieval.order)
            return step, retrieval, retrieved
        except Exception as e:  # noqa: BLE001 - Chroma's own errors (a full disk) arrive wrapped by Ray
            cause = getattr(e, "cause", None) or e
            # The last line: when Ray could not hand back the cause itself, `e` carries the actor's traceback as
            # text, and its last line is the error.
            raise RunFailed(
                f"cannot store step {step} of {task} in the trajectory memory: "
                f"{error_line(cause, last=True)}; the step is "
                f"checkpointed, `gpo-ray resume {self._run_dir}` continues once that is fixed"
            ) from None

    async def settle(self, task: str) -> Written:
        """Wait for the task's memory writes (its end, or a retrieval that needs them); raises what stopped one."""
        write = self._writes.get(task)
        return None if write is None else await asyncio.shield(write)

    async def close(self) -> None:
        """Stop the writes still under way (a run that stopped on an error; memory is re-filled on resume)."""
        writes, self._writes = list(self._writes.values()), {}
        for write in writes:
            write.cancel()
        for write in writes:
            with contextlib.suppress(BaseException):
                await write

    def should_stop(self) -> bool:
        return self._should_stop()
