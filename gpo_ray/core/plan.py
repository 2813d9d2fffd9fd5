"""What a run will cost before it starts: steps, edit budgets, LLM calls and tokens per task.

Counts are exact upper bounds for calls (strict mode may re-ask); tokens are estimates at ~4 characters
per token, with completions counted at their max_tokens cap. With `answer_extraction: second_turn`, every
scored example of a task that has a second turn costs two task-model calls: `task_model_calls` includes
them and `second_turn_calls` says how many of them there are.

The design-space objects (core/design/) count their extra calls, and the totals include them: with `direction:
feedback`, one feedback call per step (`feedback_calls`) and the current prompt's scoring on the step's training batch
(`feedback_scoring_calls`, second turns included); with `momentum.update: summarize`, one summarize call per step
from the second on (`summarize_calls`). With `trace_scores`, the current prompt on each step's training batch and
every trajectory prompt on the test split (`trace_scoring_calls`, second turns included), in place of the initial and
best prompts' test scoring at the end; the feedback direction then reads that traced batch's replies (the official
loop computes its feedback from them), so `feedback_scoring_calls` is 0.

A rival method (`optimizer.method` ape | apo | opro: core/design/method.py) counts its own calls (`method_calls`, by
request kind); the initial prompt's eval scoring and the final test scoring are the loop's, as for GPO. APO's step
prompt reuses its eval score when its beam keeps a prompt already on the trajectory, and its training draws repeat
(prompt, example) pairs once they pass the end of the training split (the evaluators' score cache answers them):
plan counts both as scored, so for APO the task-model count is then a bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from gpo_ray.config import JudgeMetric, OptimizerSettings
from gpo_ray.core.adaptive import halving_calls
from gpo_ray.core.batches import steps_per_epoch
from gpo_ray.core.design import DEFAULT_REGISTRY, DesignRegistry
from gpo_ray.core.design.method import RunShape
from gpo_ray.core.generation import GenerationRequest, meta_prompt_for
from gpo_ray.core.loop import (
    format_examples_for,
    schedule_for,
    settings_for_task,
    template_for,
    train_examples,
)
from gpo_ray.core.meta_prompt import build_meta_prompt
from gpo_ray.core.paper_meta_prompt import SCORE_PLACEHOLDER
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.llm.protocol import CHARS_PER_TOKEN, tokens_in_chars
from gpo_ray.tasks.judge import JudgeParams, judge_request
from gpo_ray.tasks.second_turn import SECOND_TURN_MAX_TOKENS, second_turn_text
from gpo_ray.tasks.types import Example, Task


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
    feedback_calls: int = 0  # optimizer calls, included in optimizer_calls
    summarize_calls: int = 0  # optimizer calls, included in optimizer_calls
    feedback_scoring_calls: int = 0  # task-model calls, included in task_model_calls (second turns too)
    # trace_scores: the current prompt on each step's training batch and every trajectory prompt (the initial one
    # too) on the test split; these replace the initial and best prompts' final test scoring. In task_model_calls.
    trace_scoring_calls: int = 0
    # A `kind: judge` metric: one judge call per scored example (feedback and trace scoring too), a role of its own;
    # a judge reply that cannot be read is asked again (tasks/judge.py), not counted here.
    judge_calls: int = 0
    judge_tokens: int = 0
    # optimizer.method: which optimizer, and a rival method's optimizer calls by request kind (in optimizer_calls).
    method: str = "gpo"
    method_calls: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def step_batch_sizes(train_size: int, *, batch_size: int, steps: int) -> list[int]:
    """How many training examples each step's batch holds (core/batches.py: batch_for_step)."""
    per_epoch = steps_per_epoch(train_size, batch_size=batch_size)
    if per_epoch == 0:
        return [0] * steps
    sizes = [len(range(train_size)[i * batch_size : (i + 1) * batch_size]) for i in range(per_epoch)]
    return [sizes[(t - 1) % per_epoch] for t in range(1, steps + 1)]


def step1_meta_prompt(task: Task, settings: OptimizerSettings, *, structured: bool,
                      registry: DesignRegistry = DEFAULT_REGISTRY) -> str:
    """The step-1 optimizer request for `task` as the loop would send it, the initial prompt's score (not known
    before the run) shown as SCORE_PLACEHOLDER."""
    settings = settings_for_task(task, settings, registry=registry)
    design = registry.design_for(settings)
    if design.method is not None:
        return design.method.step1_request(initial_prompt=settings.initial_prompt,
                                           train=train_examples(task, settings), settings=settings, task=task.name,
                                           placement=settings.placement)
    schedule = schedule_for(task, settings)
    initial = TrajectoryEntry(settings.initial_prompt, SCORE_PLACEHOLDER, 0)  # type: ignore[arg-type]
    shown: dict = {"retrieved": (), **design.direction.step1_shown(),
                   **design.momentum.step1_shown(initial, design.retrieval)}
    return meta_prompt_for(
        GenerationRequest(
            task=task.name, step=1, current_prompt=settings.initial_prompt,
            format_examples=format_examples_for(task, settings), edit_budget=schedule.budget(1), n=settings.candidates,
            tried=(), placement=settings.placement, structured=structured, template=template_for(settings),
            style=design.style.name, update=design.update.name, budget_in_prompt=design.budget.in_prompt,
            current_score=SCORE_PLACEHOLDER, **shown,  # type: ignore[arg-type]
        )
    )


def plan_task(
    task: Task,
    settings: OptimizerSettings,
    *,
    optimizer_max_tokens: int,
    task_max_tokens: int,
    judge_max_tokens: int = 200,
    registry: DesignRegistry = DEFAULT_REGISTRY,
) -> TaskPlan:
    settings = settings_for_task(task, settings, registry=registry)
    design = registry.design_for(settings)
    schedule = schedule_for(task, settings)
    steps = schedule.total_steps
    n_eval = min(len(task.eval), settings.eval_limit or len(task.eval))
    n_test = min(len(task.test), settings.test_limit or len(task.test)) if settings.evaluate_test else 0
    if design.method is not None:
        return _plan_method(task, settings, design.method, steps=steps, n_eval=n_eval, n_test=n_test,
                            optimizer_max_tokens=optimizer_max_tokens, task_max_tokens=task_max_tokens,
                            judge_max_tokens=judge_max_tokens, edit_budget=[0] * steps)  # no edit budget
    optimizer_calls = steps * settings.candidates * design.budget.rounds
    if settings.candidate_scoring == "eval":  # the chosen candidate's eval score comes with its scoring
        a = settings.adaptive_evaluation
        per_step = (halving_calls(settings.candidates, n_eval, first_round=a.first_round, eta=a.eta) if a.enabled
                    else settings.candidates * n_eval)
    else:
        per_step = settings.candidates * min(settings.batch_size, len(train_examples(task, settings))) + n_eval
    trace_scored = 0
    if settings.trace_scores:
        trace_scored = sum(step_batch_sizes(len(train_examples(task, settings)), batch_size=settings.batch_size,
                                            steps=steps)) + (steps + 1) * n_test
    final_test = 0 if settings.trace_scores else 2 * n_test
    scored = n_eval + steps * per_step + final_test + trace_scored  # (prompt, example) pairs scored
    second_turn = has_second_turn(task, settings)
    second_turns = scored if second_turn else 0
    task_calls = scored + second_turns
    direction = design.direction.planned(
        steps=steps, trace_scores=settings.trace_scores,
        batch_examples=sum(step_batch_sizes(len(train_examples(task, settings)), batch_size=settings.batch_size,
                                            steps=steps)))
    extra = dict(direction.optimizer)  # the extra optimizer calls by count name: the direction's, the momentum's
    for name, calls in design.momentum.planned_calls(steps=steps).items():
        extra[name] = extra.get(name, 0) + calls
    feedback_scored = direction.scored
    feedback_scoring_calls = feedback_scored * (2 if second_turn else 1)
    optimizer_calls += sum(extra.values())
    task_calls += feedback_scoring_calls
    second_turns += feedback_scored if second_turn else 0

    meta = build_meta_prompt(
        current_prompt=settings.initial_prompt,
        retrieved=[TrajectoryEntry(settings.initial_prompt, 0.5, 0)] * min(settings.retrieval_k, 3),
        format_examples=task.format_examples[: settings.format_examples],
        edit_budget=schedule.initial,
        placement=settings.placement,
        structured=False,
        template=template_for(settings),
        update=design.update.name,
        budget_in_prompt=design.budget.in_prompt,
    )
    inputs = [e.input for e in task.train + task.eval + task.test] or [""]
    avg_input = sum(map(len, inputs)) / len(inputs) + len(settings.initial_prompt)
    judge_calls = judge_tokens = 0
    if isinstance(task.metric, JudgeMetric):
        judge_calls = scored + feedback_scored
        # The request as sent for a typical example, the reply to grade at the task model's cap.
        sample = next(iter(task.eval + task.train + task.test), None)
        asked = judge_request(task.metric, sample or Example(input="", answers=()), "x" * task_max_tokens * CHARS_PER_TOKEN,
                              params=JudgeParams(max_tokens=judge_max_tokens))
        judge_tokens = judge_calls * (tokens_in_chars(asked.prompt_chars, nearest=True) + judge_max_tokens)
    return TaskPlan(
        task=task.name,
        train=len(task.train),
        eval=len(task.eval),
        test=len(task.test),
        steps=steps,
        edit_budget=schedule.as_list(),
        optimizer_calls=optimizer_calls,
        task_model_calls=task_calls,
        # the feedback and summarize requests are counted at the meta-prompt's size: about as long
        optimizer_tokens=optimizer_calls * (tokens_in_chars(len(meta), nearest=True) + optimizer_max_tokens),
        task_model_tokens=(scored + feedback_scored) * (tokens_in_chars(avg_input, nearest=True) + task_max_tokens)
        # a second turn resends the first turn and its reply, then asks; its reply is capped lower
        + second_turns * (tokens_in_chars(avg_input + 100, nearest=True) + task_max_tokens + SECOND_TURN_MAX_TOKENS),
        second_turn_calls=second_turns,
        feedback_calls=extra.get("feedback_calls", 0),
        summarize_calls=extra.get("summarize_calls", 0),
        feedback_scoring_calls=feedback_scoring_calls,
        trace_scoring_calls=trace_scored * (2 if second_turn else 1),
        judge_calls=judge_calls,
        judge_tokens=judge_tokens,
    )


def _plan_method(task: Task, settings: OptimizerSettings, method, *, steps: int, n_eval: int, n_test: int,
                 optimizer_max_tokens: int, task_max_tokens: int, judge_max_tokens: int,
                 edit_budget: list[int]) -> TaskPlan:
    """A rival method's plan (core/design/method.py counts its calls): the initial prompt on the eval split, the
    method's steps, and the initial and best prompts on the test split, as for GPO."""
    train = train_examples(task, settings)
    planned = method.planned(RunShape(steps=steps, train=len(train), eval=n_eval, settings=settings))
    scored = n_eval + planned.scored + 2 * n_test
    second_turn = has_second_turn(task, settings)
    second_turns = scored if second_turn else 0
    request = method.step1_request(initial_prompt=settings.initial_prompt, train=train, settings=settings,
                                   task=task.name, placement=settings.placement)
    inputs = [e.input for e in task.train + task.eval + task.test] or [""]
    avg_input = sum(map(len, inputs)) / len(inputs) + len(settings.initial_prompt)
    judge_calls = judge_tokens = 0
    if isinstance(task.metric, JudgeMetric):
        judge_calls = scored
        sample = next(iter(task.eval + task.train + task.test), None)
        asked = judge_request(task.metric, sample or Example(input="", answers=()), "x" * task_max_tokens * CHARS_PER_TOKEN,
                              params=JudgeParams(max_tokens=judge_max_tokens))
        judge_tokens = judge_calls * (tokens_in_chars(asked.prompt_chars, nearest=True) + judge_max_tokens)
    return TaskPlan(
        task=task.name, train=len(task.train), eval=len(task.eval), test=len(task.test), steps=steps,
        edit_budget=edit_budget, optimizer_calls=planned.optimizer_calls, task_model_calls=scored + second_turns,
        # every optimizer request counted at the step-1 request's size (later ones show more history)
        optimizer_tokens=planned.optimizer_calls * (tokens_in_chars(len(request), nearest=True) + optimizer_max_tokens),
        task_model_tokens=scored * (tokens_in_chars(avg_input, nearest=True) + task_max_tokens)
        + second_turns * (tokens_in_chars(avg_input + 100, nearest=True) + task_max_tokens + SECOND_TURN_MAX_TOKENS),
        second_turn_calls=second_turns, judge_calls=judge_calls, judge_tokens=judge_tokens,
        method=method.name, method_calls=dict(planned.optimizer),
    )


def has_second_turn(task: Task, settings: OptimizerSettings) -> bool:
    """Whether scoring an example of this task takes a second task-model call (it does not depend on the example)."""
    if settings.answer_extraction != "second_turn":
        return False
    question = next((e.input for e in task.eval + task.train + task.test), "")
    return second_turn_text(task.name, task.metric, question) is not None
