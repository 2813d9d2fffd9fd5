"""The paper's design space as objects (core/design/): config names map to one object per axis, the loop, the actor
services and `plan` ask the objects, and a new momentum kind is one class registered through the public registry:
`BestSoFarCarried` below, defined here and nowhere else, runs through the loop and `plan` unchanged."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from gpo_ray.config import MomentumSettings, OptimizerSettings, ScheduleConfig
from gpo_ray.core.design import (
    DEFAULT_REGISTRY,
    Retrieval,
    StepContext,
    StepView,
    design_for,
)
from gpo_ray.core.evaluation import TaskModelParams
from gpo_ray.core.loop import GPOTaskLoop
from gpo_ray.core.plan import plan_task, step1_meta_prompt
from gpo_ray.core.reference import InProcessServices
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.core.variants import SUMMARIZE
from gpo_ray.testing import ScriptedLLM
from gpo_ray.vocabulary import Purpose
from tests.unit.test_core_loop import bag_of_words, example_task, optimizer_config, task_model_config
from tests.fakes import RecordingScriptedLLM

PACKAGE = Path(__file__).resolve().parents[2] / "gpo_ray"


# --- a momentum kind of this test's own -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BestSoFarCarried:
    """Carries the best prompt so far, merged with the current one by one optimizer call at every step (step 1 too),
    and shows the merge as the carried prompt with the current prompt's score."""

    def retrieval(self, retrieval: Retrieval) -> Retrieval | None:
        return None  # reads the loop's trajectory, not the trajectory memory

    async def step(self, ctx: StepContext, *, feedback: str | None) -> StepView:
        current = ctx.trajectory[-1]
        best = max(ctx.trajectory, key=lambda e: (e.score, -e.step))
        text = ctx.style.summarize_prompts_request(previous=best, current=current, template=ctx.template)
        merged = await ctx.ask(SUMMARIZE, text)
        return StepView(shown={"previous": TrajectoryEntry(merged, current.score, ctx.t)},
                        kept={"momentum": merged, "momentum_score": current.score},
                        counts={"summarize_calls": 1})

    def step1_shown(self, initial: TrajectoryEntry, retrieval: Retrieval) -> dict:
        return {"previous": initial}

    def planned_calls(self, *, steps: int) -> dict[str, int]:
        return {"summarize_calls": steps}


REGISTRY = DEFAULT_REGISTRY.with_momentum(content="prompts", update="best_so_far", kind=BestSoFarCarried())


def loop_settings(**kw) -> OptimizerSettings:
    base = {"epochs": 2, "batch_size": 4, "candidates": 3, "retrieval": "recency", "retrieval_k": 2,
            "initial_prompt": "Answer the question.", "schedule": ScheduleConfig(initial=12, final=4)}
    base.update(kw)
    return OptimizerSettings(**base)


def _best_so_far(settings: OptimizerSettings) -> OptimizerSettings:
    # The schema's values name the built-in kinds; a kind registered in code is picked by the same two names.
    return settings.model_copy(update={"momentum": MomentumSettings.model_construct(content="prompts",
                                                                                    update="best_so_far")})


async def _run(settings: OptimizerSettings, *, registry=DEFAULT_REGISTRY):
    optimizer = RecordingScriptedLLM(optimizer_config())
    services = InProcessServices(optimizer_llm=optimizer, task_llm=ScriptedLLM(task_model_config()), embed=bag_of_words,
                                 task_params=TaskModelParams())
    loop = GPOTaskLoop(example_task(), settings=settings, services=services, structured=False, registry=registry)
    return await loop.run(), optimizer


async def test_a_momentum_kind_defined_in_a_test_runs_through_the_loop_and_plan() -> None:
    settings = _best_so_far(loop_settings())
    result, optimizer = await _run(settings, registry=REGISTRY)
    plan = plan_task(example_task(), settings, optimizer_max_tokens=256, task_max_tokens=256, registry=REGISTRY)
    steps = result.steps
    summaries = [r.messages[-1].content for r in optimizer.requests if r.purpose == Purpose.SUMMARIZE]
    candidates = [r.messages[-1].content for r in optimizer.requests if r.purpose == Purpose.CANDIDATES]
    # The calls plan counts are the calls made.
    assert len(steps) == plan.steps >= 3
    assert len(summaries) == optimizer.calls["summarize"] == plan.summarize_calls == len(steps)
    assert len(optimizer.requests) == plan.optimizer_calls == len(steps) * (settings.candidates + 1)
    assert [s.counts["summarize_calls"] for s in steps] == [1] * len(steps)
    # Each step's summary request merges the best prompt so far with the current one ...
    trajectory = [TrajectoryEntry(result.initial_prompt, result.initial_eval_score, 0)]
    for step, summary in zip(steps, summaries, strict=True):
        best = max(trajectory, key=lambda e: (e.score, -e.step))
        assert f"<previous_prompt>\n{best.prompt}\n</previous_prompt>" in summary
        assert f"<latest_prompt>\n{trajectory[-1].prompt}\n</latest_prompt>" in summary
        trajectory.append(TrajectoryEntry(step.prompt, step.eval_score, step.step))
    # ... and the step's meta-prompt shows the merge as the carried prompt, with the current prompt's score.
    for step, first in zip(steps, candidates[:: settings.candidates], strict=True):
        assert ("Here is a prompt carried over from the earlier steps with its score. Scores range from 0 to 100; "
                f"higher is better.\n\nPrompt: {step.momentum}\nscore: {round(step.momentum_score * 100)}/100") in first
        assert "Here are earlier prompts" not in first
    shown = step1_meta_prompt(example_task(), settings, structured=False, registry=REGISTRY)
    assert f"Prompt: {settings.initial_prompt}\n" in shown and "carried over" in shown
    assert design_for(loop_settings()).step_retrieval is not None
    assert REGISTRY.design_for(settings).step_retrieval is None


def test_a_kind_not_registered_is_named() -> None:
    with pytest.raises(ValueError, match="optimizer.momentum: no kind .*best_so_far.* is registered"):
        design_for(_best_so_far(loop_settings()))


@pytest.mark.parametrize(("content", "update", "retrieves"), [
    ("prompts", "retrieve", True), ("prompts", "summarize", False), ("feedback", "retrieve", False),
    ("feedback", "summarize", False), ("none", "retrieve", False),
])
def test_only_the_k_list_of_prompts_retrieves_from_the_trajectory_memory(content, update, retrieves) -> None:
    settings = loop_settings(direction="feedback", momentum=MomentumSettings(content=content, update=update),
                         retrieval_order="as_selected")
    expected = Retrieval("recency", 2, "as_selected") if retrieves else None
    assert design_for(settings).step_retrieval == expected


def test_no_design_space_branch_outside_the_objects() -> None:
    """Which style, direction or momentum is in force is asked of core/design/ alone (config validates at the edge,
    the report prints the names)."""
    branch = re.compile(r"(meta_prompt_style|\bstyle|\.direction|momentum\.(content|update))\s*(==|!=|\bin\b)")
    found = [f"{path.relative_to(PACKAGE)}:{no}" for path in PACKAGE.rglob("*.py")
             if path.parent.name != "design" and path.parts[-2] != "config"
             for no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if branch.search(line)]
    assert found == []
