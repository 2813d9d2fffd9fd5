"""TaskServices backed by actors: memory for retrieval, refiners for generation, the evaluator pool for scores."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from gpo_ray.core.edit_distance import word_edit_distance
from gpo_ray.core.generation import GenerationRequest, GenerationResult, OptimizerTextRequest
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import RunFailed, error_line
from gpo_ray.memory.store import MemoryRecord
from gpo_ray.tasks.types import Example, Task


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

    async def score(self, task: str, metric: Any, prompts: Sequence[str], examples: Sequence[Example]
                    ) -> list[list[float]]: ...


class ActorServices:
    def __init__(
        self,
        *,
        memory: Any,
        refiners: Refiners,
        evaluators: Evaluators,
        on_step: Callable[[Task, StepResult], Awaitable[None]],
        should_stop: Callable[[], bool],
        run_dir: str,
        memory_namespace: str = "",
    ) -> None:
        self.memory = memory
        self.refiners = refiners
        self.evaluators = evaluators
        self._on_step = on_step
        self._should_stop = should_stop
        self._run_dir = run_dir
        # A sweep's sub-runs share one memory actor: each keeps its trajectories under its own prefix.
        self._memory_namespace = memory_namespace
        self._last_prompt: dict[str, str] = {}

    def _memory_key(self, task: str) -> str:
        return self._memory_namespace + task

    async def retrieve(
        self, task: Task, trajectory: Sequence[TrajectoryEntry], *, strategy: str, k: int, order: str,
    ) -> list[TrajectoryEntry]:
        return await self.memory.retrieve.remote(self._memory_key(task.name), strategy=strategy, k=k, order=order)

    async def generate(self, request: GenerationRequest) -> GenerationResult:
        return await self.refiners.generate(request)

    async def score(self, task: Task, prompts: Sequence[str], examples: Sequence[Example]) -> list[list[float]]:
        return await self.evaluators.score(task.name, task.metric, prompts, examples)

    async def score_with_predictions(
        self, task: Task, prompt: str, examples: Sequence[Example]
    ) -> list[tuple[float, str]]:
        return await self.evaluators.score_with_predictions(task.name, task.metric, prompt, examples)

    async def ask_optimizer(self, request: OptimizerTextRequest) -> str:
        return await self.refiners.ask(request)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return await self.memory.embed.remote(list(texts))

    async def remember(self, task: str, records: Sequence[StepResult]) -> None:
        """Re-add restored steps (idempotent upserts), so memory matches the checkpoints after a resume."""
        rows: list[MemoryRecord] = []
        parent = ""
        for r in records:
            rows += memory_records(self._memory_key(task), r, parent=parent)
            parent = r.prompt
        if rows:
            await self.memory.add.remote(rows)
        if records:
            self._last_prompt[task] = records[-1].prompt

    async def step_done(self, task: Task, record: StepResult) -> None:
        # Checkpoint first: it is the source of truth; memory is re-filled from it on resume.
        await self._on_step(task, record)
        parent = self._last_prompt.get(task.name, "")
        try:
            await self.memory.add.remote(memory_records(self._memory_key(task.name), record, parent=parent))
        except Exception as e:  # noqa: BLE001 - Chroma's own errors (a full disk) arrive wrapped by Ray
            cause = getattr(e, "cause", None) or e
            # The last line: when Ray could not hand back the cause itself, `e` carries the actor's traceback as
            # text, and its last line is the error.
            raise RunFailed(
                f"cannot store step {record.step} of {task.name} in the trajectory memory: "
                f"{error_line(cause, last=True)}; the step is "
                f"checkpointed, `gpo-ray resume {self._run_dir}` continues once that is fixed"
            ) from None
        self._last_prompt[task.name] = record.prompt

    def should_stop(self) -> bool:
        return self._should_stop()
