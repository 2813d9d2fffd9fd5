"""What a run will cost before it starts: steps, edit budgets, LLM calls and tokens per task.

Counts are exact upper bounds for calls (strict mode may re-ask); tokens are estimates at ~4 characters
per token, with completions counted at their max_tokens cap. With `answer_extraction: second_turn`, every
scored example of a task that has a second turn costs two task-model calls: `task_model_calls` includes
them and `second_turn_calls` says how many of them there are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from gpo_ray.config import OptimizerSettings
from gpo_ray.core.adaptive import halving_calls
from gpo_ray.core.generation import GenerationRequest, meta_prompt_for
from gpo_ray.core.loop import (
    format_examples_for,
    schedule_for,
    template_for,
    train_examples,
)
from gpo_ray.core.meta_prompt import build_meta_prompt
from gpo_ray.core.paper_meta_prompt import SCORE_PLACEHOLDER
from gpo_ray.core.retrieval import retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.llm.protocol import tokens_in_chars
from gpo_ray.tasks.second_turn import SECOND_TURN_MAX_TOKENS, second_turn_text
from gpo_ray.tasks.types import Task


@dataclass(frozen=True)
class TaskPlan:
    task: str
    train: int
    eval: int
    test: int
    steps: int
    edit_budget: list[int]
    optimizer_calls: int
    task_model_calls: int
    optimizer_tokens: int
    task_model_tokens: int
    second_turn_calls: int = 0  # included in task_model_calls

    def to_dict(self) -> dict:
        return asdict(self)


def step1_meta_prompt(task: Task, settings: OptimizerSettings, *, structured: bool) -> str:
    """The step-1 optimizer request for `task` as the loop would send it, the initial prompt's score (not known
    before the run) shown as SCORE_PLACEHOLDER."""
    schedule = schedule_for(task, settings)
    trajectory = [TrajectoryEntry(settings.initial_prompt, SCORE_PLACEHOLDER, 0)]  # type: ignore[arg-type]
    # One entry: every strategy and order retrieves it alone (relevance needs no vector for the newest).
    retrieved = retrieve(trajectory, strategy="recency", k=settings.retrieval_k)
    return meta_prompt_for(
        GenerationRequest(
            task=task.name, step=1, current_prompt=settings.initial_prompt, retrieved=tuple(retrieved),
            format_examples=format_examples_for(task, settings), edit_budget=schedule.budget(1), n=settings.candidates,
            tried=(), placement=settings.placement, structured=structured, template=template_for(settings),
            style=settings.meta_prompt_style, update=settings.update, budget_in_prompt=settings.budget_in_prompt,
        )
    )


def plan_task(
    task: Task,
    settings: OptimizerSettings,
    *,
    optimizer_max_tokens: int,
    task_max_tokens: int,
) -> TaskPlan:
    schedule = schedule_for(task, settings)
    steps = schedule.total_steps
    n_eval = min(len(task.eval), settings.eval_limit or len(task.eval))
    n_test = min(len(task.test), settings.test_limit or len(task.test)) if settings.evaluate_test else 0
    rounds = 1 + (settings.max_rerequests if settings.edit_enforcement == "strict" else 0)
    optimizer_calls = steps * settings.candidates * rounds
    if settings.candidate_scoring == "eval":  # the chosen candidate's eval score comes with its scoring
        a = settings.adaptive_evaluation
        per_step = (halving_calls(settings.candidates, n_eval, first_round=a.first_round, eta=a.eta) if a.enabled
                    else settings.candidates * n_eval)
    else:
        per_step = settings.candidates * min(settings.batch_size, len(train_examples(task, settings))) + n_eval
    scored = n_eval + steps * per_step + 2 * n_test  # (prompt, example) pairs scored
    second_turns = scored if has_second_turn(task, settings) else 0
    task_calls = scored + second_turns

    meta = build_meta_prompt(
        current_prompt=settings.initial_prompt,
        retrieved=[TrajectoryEntry(settings.initial_prompt, 0.5, 0)] * min(settings.retrieval_k, 3),
        format_examples=task.format_examples[: settings.format_examples],
        edit_budget=schedule.initial,
        placement=settings.placement,
        structured=False,
        template=template_for(settings),
        update=settings.update,
        budget_in_prompt=settings.budget_in_prompt,
    )
    inputs = [e.input for e in task.train + task.eval + task.test] or [""]
    avg_input = sum(map(len, inputs)) / len(inputs) + len(settings.initial_prompt)
    return TaskPlan(
        task=task.name,
        train=len(task.train),
        eval=len(task.eval),
        test=len(task.test),
        steps=steps,
        edit_budget=schedule.as_list(),
        optimizer_calls=optimizer_calls,
        task_model_calls=task_calls,
        optimizer_tokens=optimizer_calls * (tokens_in_chars(len(meta), nearest=True) + optimizer_max_tokens),
        task_model_tokens=scored * (tokens_in_chars(avg_input, nearest=True) + task_max_tokens)
        # a second turn resends the first turn and its reply, then asks; its reply is capped lower
        + second_turns * (tokens_in_chars(avg_input + 100, nearest=True) + task_max_tokens + SECOND_TURN_MAX_TOKENS),
        second_turn_calls=second_turns,
    )


def has_second_turn(task: Task, settings: OptimizerSettings) -> bool:
    """Whether scoring an example of this task takes a second task-model call (it does not depend on the example)."""
    if settings.answer_extraction != "second_turn":
        return False
    question = next((e.input for e in task.eval + task.train + task.test), "")
    return second_turn_text(task.name, task.metric, question) is not None
