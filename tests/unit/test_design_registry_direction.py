"""A direction kind registered in code (`DesignRegistry.with_direction`) runs through the loop and `plan` as a
built-in one does: `AskOnce` below, defined here and nowhere else, makes its own optimizer call at every step, the
step's candidates' meta-prompt shows its reply, and `plan` counts the calls it makes. A registry is a value: the
default one is unchanged. (A meta-prompt style has no `with_style`: the candidates' meta-prompt is rendered by name
from the built-in styles, in the refiner actors too, so a new style is a built-in one.)"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gpo_ray.config import OptimizerSettings, ScheduleConfig
from gpo_ray.core.design import DEFAULT_REGISTRY, DesignRegistry, StepContext, StepView
from gpo_ray.core.design.direction import DirectionCalls
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.variants import FEEDBACK
from gpo_ray.testing import ScriptedLLM
from gpo_ray.vocabulary import Purpose
from tests.unit.test_core_loop import bag_of_words, example_task, optimizer_config, task_model_config
from tests.fakes import RecordingScriptedLLM


@dataclass(frozen=True)
class AskOnce:
    """Asks the optimizer once per step what the current prompt lacks, without scoring anything, and shows the reply
    where a direction's feedback goes."""

    name: str = "ask_once"
    reads_replies: bool = False

    async def step(self, ctx: StepContext) -> tuple[str | None, StepView]:
        reply = await ctx.ask(FEEDBACK, f"What does this prompt lack?\n{ctx.trajectory[-1].prompt}")
        return reply, StepView(shown={"gradient": reply}, kept={"feedback": reply}, counts={"ask_once_calls": 1})

    def step1_shown(self) -> dict:
        return {"gradient": "<what the prompt lacks>"}

    def planned(self, *, steps: int, batch_examples: int, trace_scores: bool) -> DirectionCalls:
        return DirectionCalls(optimizer={"ask_once_calls": steps})


REGISTRY = DEFAULT_REGISTRY.with_direction("ask_once", AskOnce())


def settings() -> OptimizerSettings:
    built_in = OptimizerSettings(epochs=2, batch_size=4, candidates=3, retrieval="recency", retrieval_k=2,
                                 initial_prompt="Answer the question.",
                                 schedule=ScheduleConfig(initial=12, final=4))
    # The schema's values name the built-in kinds; a kind registered in code is picked by its name.
    return built_in.model_copy(update={"direction": "ask_once"})


async def test_a_direction_registered_in_code_runs_through_the_loop_and_plan() -> None:
    optimizer = RecordingScriptedLLM(optimizer_config())
    services = InProcessServices(optimizer_llm=optimizer, task_llm=ScriptedLLM(task_model_config()),
                                 embed=bag_of_words, task_params=TaskModelParams())
    loop = GPOTaskLoop(example_task(), settings=settings(), services=services, structured=False, registry=REGISTRY)
    result = await loop.run()
    plan = plan_task(example_task(), settings(), optimizer_max_tokens=256, task_max_tokens=256, registry=REGISTRY)

    asked = [r for r in optimizer.requests if r.purpose == Purpose.FEEDBACK]
    candidates = [r.messages[-1].content for r in optimizer.requests if r.purpose == Purpose.CANDIDATES]
    assert len(result.steps) == plan.steps >= 3
    assert len(asked) == len(result.steps) == plan.optimizer_calls - len(result.steps) * settings().candidates
    assert [s.counts["ask_once_calls"] for s in result.steps] == [1] * len(result.steps)
    # Each step asks about its current prompt, and its candidates' meta-prompts show the reply.
    trajectory = [result.initial_prompt, *(s.prompt for s in result.steps)]
    for step, ask, first in zip(result.steps, asked, candidates[:: settings().candidates], strict=True):
        assert ask.messages[-1].content == f"What does this prompt lack?\n{trajectory[step.step - 1]}"
        assert step.feedback and step.feedback in first


def test_registering_returns_a_new_registry_and_an_unregistered_direction_is_named() -> None:
    assert isinstance(REGISTRY, DesignRegistry)
    assert REGISTRY.design_for(settings()).direction == AskOnce()
    with pytest.raises(ValueError, match="optimizer.direction: no kind 'ask_once' is registered"):
        DEFAULT_REGISTRY.design_for(settings())
