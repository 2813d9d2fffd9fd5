"""What a design-space object sees of a running step, and what it hands back.

The loop (core/loop.py) implements `StepContext`; the direction and momentum objects (direction.py, momentum.py)
use it to make their extra calls, so they never reach into the loop and the loop never asks which kind they are."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gpo_ray.config import MetaPromptTemplate
from gpo_ray.core.design.retrieval import Retrieval
from gpo_ray.core.design.style import MetaPromptStyle
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example, Task


@dataclass(frozen=True)
class TracedBatch:
    """trace_scores: the step's training batch as the official loop slices it, and (when the direction reads
    replies) each example's (score, shown answer, metric feedback)."""

    examples: list[Example]
    graded: list[tuple] | None


class StepContext(Protocol):
    """One step of one task, as the loop runs it."""

    t: int  # the step being run (1..T)
    task: Task
    trajectory: Sequence[TrajectoryEntry]  # steps 0..t-1, the current prompt last
    records: Sequence[StepResult]  # the completed steps' records (step 0 first)
    traced: TracedBatch | None  # trace_scores: the step's traced training batch
    style: MetaPromptStyle
    template: MetaPromptTemplate
    retrieval: Retrieval

    @property
    def carried(self) -> StepResult | None:
        """The previous step's record (None at step 1): what a summarizing momentum carries."""
        ...

    async def ask(self, purpose: str, text: str) -> str:
        """One optimizer call besides the candidates (temperature 0), its reply between <START> and <END>."""
        ...

    async def retrieve(self, retrieval: Retrieval) -> list[TrajectoryEntry]:
        """Past prompts from the trajectory memory."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def graded(self, prompt: str, examples: Sequence[Example]) -> list[tuple[float, str, str | None]]:
        """Per example (score, reply as shown, metric feedback), metric failures settled."""
        ...

    def train_batch(self) -> Sequence[Example]:
        """The step's training batch (core/batches.py)."""
        ...

    def log(self, event: str, **fields: Any) -> None: ...


@dataclass
class StepView:
    """What an axis adds to a step: `shown` (GenerationRequest fields: what the meta-prompt shows), `kept`
    (StepResult fields: what the checkpoint keeps, so a resume does not ask again) and `counts` (the extra calls
    made, under the names `plan` counts them)."""

    shown: dict[str, Any] = field(default_factory=dict)
    kept: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
