"""The momentum axis (optimizer.momentum: content x update): what the optimizer sees of the past.

Each kind is one class: what a step shows, keeps and counts (`step`), what it retrieves from the trajectory memory
each step (`retrieval`: the actor services ask it together with the previous step's write), what plan's step-1
meta-prompt shows (`step1_shown`) and the extra calls a run makes (`planned_calls`, by the names the steps count
them under). The official code's kinds (src/optimization/first_order_momentum/momentum_update_methods/):

- prompts, retrieve (k_update.py, "para"): the retrieval_k past prompts chosen by `retrieval`;
- prompts, summarize (real_time_update.py): the carried prompt and the current one merged by one optimizer call
  (from the second step on), shown as "the previous prompt" with the current prompt's score;
- feedback, retrieve: the step's feedback and up to k past ones, as the official k-list picks them, joined;
- feedback, summarize: the carried problems and the step's merged by one optimizer call (from the second step on);
- none: nothing of the past.

A new kind is a class with these four methods, registered under its config names (design/registry.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import pairwise
from typing import Protocol

from gpo_ray.core.design.retrieval import Retrieval
from gpo_ray.core.design.step import StepContext, StepView
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.core.variants import SUMMARIZE, join_feedback, select_feedback


class Momentum(Protocol):
    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        """What every step retrieves from the trajectory memory, or None when the kind retrieves no past prompts."""
        ...

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        """What the step shows of the past (overriding the direction's `gradient` where it shows feedback), keeps
        for the next step and counts; `feedback` is the direction's for this step."""
        ...

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        """What plan's step-1 meta-prompt shows of the past, the trajectory holding the initial prompt alone."""
        ...

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        """The extra optimizer calls over a run of `steps` steps, by count name (the names the steps count)."""
        ...


@dataclass(frozen=True)
class NoMomentum:
    """content none: the meta-prompt shows nothing of the past."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return None

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        return StepView()

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        return {}

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class RetrievedPrompts:
    """prompts, retrieve: the k-list of past prompts with their scores."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return retrieval

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        return StepView(shown={"retrieved": tuple(await ctx.retrieve(ctx.retrieval))})

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        # One entry: every strategy and order retrieves it alone.
        return {"retrieved": (initial,)}

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class SummarizedPrompts:
    """prompts, summarize: one carried prompt, merged with the current one at every step from the second on."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return None

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        current = ctx.trajectory[-1]
        carried = ctx.carried
        counts: dict[str, int] = {}
        if carried is not None and carried.momentum is not None:
            previous = TrajectoryEntry(carried.momentum, float(carried.momentum_score or 0.0), carried.step)
            text = ctx.style.summarize_prompts_request(previous=previous, current=current, template=ctx.template)
            merged = await ctx.ask(SUMMARIZE, text)
            counts["summarize_calls"] = 1
        else:
            merged = current.prompt
        # optimize.py scores the current prompt (update_instruction) for the summary: its score is the current's.
        return StepView(shown={"previous": TrajectoryEntry(merged, current.score, ctx.t)},
                        kept={"momentum": merged, "momentum_score": current.score}, counts=counts)

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        return {"previous": initial}  # step 1 carries the initial prompt itself

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {"summarize_calls": max(0, steps - 1)}


@dataclass(frozen=True)
class RetrievedFeedback:
    """feedback, retrieve: the step's feedback and past ones, as the official k-list picks them, joined."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return None

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        if feedback is None:
            return StepView()
        records = ctx.records
        history = [
            (r.feedback, r.eval_score - before.eval_score)
            for before, r in pairwise(records)
            if r.feedback is not None
        ] + [(feedback, 0.0)]
        r = ctx.retrieval
        vectors = await ctx.embed([text for text, _ in history]) if r.embeds else None
        return StepView(shown={"gradient": join_feedback(
            select_feedback(history, strategy=r.strategy, k=r.k, vectors=vectors))})

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        return {}

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {}


@dataclass(frozen=True)
class SummarizedFeedback:
    """feedback, summarize: the carried problems merged with the step's from the second step on."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return None

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        if feedback is None:
            return StepView()
        carried = ctx.carried
        counts: dict[str, int] = {}
        if carried is not None and carried.momentum:  # optimize.py: len(real_time_gradient_momentum) > 0
            text = ctx.style.summarize_feedback_request(previous=carried.momentum, current=feedback,
                                                        template=ctx.template)
            merged = await ctx.ask(SUMMARIZE, text)
            counts["summarize_calls"] = 1
        else:
            merged = feedback
        return StepView(shown={"gradient": merged}, kept={"momentum": merged}, counts=counts)

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        return {}

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {"summarize_calls": max(0, steps - 1)}
