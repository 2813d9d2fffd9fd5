"""The update-direction axis (optimizer.direction): what the meta-prompt shows of where to go from the current prompt.

`none` shows nothing; `feedback` (the official gradient/feedback_gradient.py) scores the current prompt on the step's
training batch, asks the optimizer once why it got the wrong examples wrong, and shows the reply (core/variants.py).
A direction makes its calls through the step's context and counts them for `plan`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gpo_ray.core.design.step import StepContext, StepView
from gpo_ray.core.variants import FEEDBACK, wrong_examples
from gpo_ray.vocabulary import MetricKind

# What plan's step-1 meta-prompt shows in place of the feedback, not known before the run.
FEEDBACK_PLACEHOLDER = "<the feedback of step 1: the optimizer's reasons for the wrong examples>"


@dataclass(frozen=True)
class DirectionCalls:
    """A direction's extra calls over a run: optimizer calls by count name, and (prompt, example) pairs scored."""

    optimizer: dict[str, int]
    scored: int = 0


class Direction(Protocol):
    name: str
    reads_replies: bool  # the step's traced training batch is scored with its replies (trace_scores)

    async def step(self, ctx: StepContext) -> tuple[str | None, StepView]:
        """The step's feedback (None: the direction has none) and what the step shows, keeps and counts of it."""
        ...

    def step1_shown(self) -> dict:
        """What plan's step-1 meta-prompt shows of the direction."""
        ...

    def planned(self, *, steps: int, batch_examples: int, trace_scores: bool) -> DirectionCalls:
        """The extra calls of a run of `steps` steps whose training batches hold `batch_examples` examples in all."""
        ...


@dataclass(frozen=True)
class NoDirection:
    name: str = "none"
    reads_replies: bool = False

    async def step(self, ctx: StepContext) -> tuple[str | None, StepView]:
        return None, StepView()

    def step1_shown(self) -> dict:
        return {}

    def planned(self, *, steps: int, batch_examples: int, trace_scores: bool) -> DirectionCalls:
        return DirectionCalls(optimizer={})


@dataclass(frozen=True)
class FeedbackDirection:
    name: str = "feedback"
    reads_replies: bool = True

    async def step(self, ctx: StepContext) -> tuple[str | None, StepView]:
        """The current prompt on the step's training batch, then the optimizer's reasons. With trace_scores the
        traced batch's replies serve (no second scoring: `plan` counts none)."""
        current = ctx.trajectory[-1].prompt
        if ctx.traced is not None and ctx.traced.graded is not None:
            batch, graded, scoring_calls = ctx.traced.examples, ctx.traced.graded, 0
        else:
            batch = list(ctx.train_batch())
            graded = await ctx.graded(current, batch) if batch else []
            scoring_calls = len(batch)
        # A built-in metric's wrong examples score 0 (the official rule); a spec's score below 1 (it may give partial
        # credit, and says what was missing).
        wrong = wrong_examples(batch, graded, below=None if isinstance(ctx.task.metric, MetricKind) else 1.0)
        text = ctx.style.feedback_request(current_prompt=current, wrong=wrong, template=ctx.template)
        feedback = await ctx.ask(FEEDBACK, text)
        ctx.log("feedback", wrong=len(wrong), examples=len(batch))
        return feedback, StepView(
            shown={"gradient": feedback}, kept={"feedback": feedback},
            counts={"feedback_calls": 1, "feedback_scoring_calls": scoring_calls,
                    "feedback_wrong_examples": len(wrong)})

    def step1_shown(self) -> dict:
        return {"gradient": FEEDBACK_PLACEHOLDER}

    def planned(self, *, steps: int, batch_examples: int, trace_scores: bool) -> DirectionCalls:
        # With trace_scores the feedback reads the traced training batch's replies (as optimize.py does): no extra.
        return DirectionCalls(optimizer={"feedback_calls": steps}, scored=0 if trace_scores else batch_examples)
