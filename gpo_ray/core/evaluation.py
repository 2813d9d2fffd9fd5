"""Scoring a prompt on examples with the task model: the same code in-process and in evaluator actors.

A task's metric is a built-in kind (tasks/metrics.py) or a spec (tasks/metric_specs.py). A spec's metric that cannot
score a reply gives that example a `MetricFailure` instead of a score: the loop counts it and scores it 0.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gpo_ray.config import ChecksMetric, JudgeMetric, PythonMetric, RunConfig
from gpo_ray.llm.protocol import ChatMessage, ChatRequest, LLMClient
from gpo_ray.tasks.judge import JudgeParams, ask_judge
from gpo_ray.tasks.metric_functions import load_metric_function
from gpo_ray.tasks.metric_specs import Judgement, MetricError, judge_reply, metric_name
from gpo_ray.tasks.metrics import extract_answer, score
from gpo_ray.tasks.paper_metrics import flags as paper_flags
from gpo_ray.tasks.paper_metrics import normalize as paper_normalize
from gpo_ray.tasks.placement import build_task_messages
from gpo_ray.tasks.second_turn import (
    SECOND_TURN_MAX_TOKENS,
    answer_for_parsing,
    paper_end_choice,
    second_turn_text,
)
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind, PromptPlacement, Purpose

Metric = MetricKind | PythonMetric | ChecksMetric | JudgeMetric


@dataclass(frozen=True)
class MetricFailure:
    """An example the metric could not score (it raised, or returned no score in [0, 1]): it scores 0 and is counted
    as a metric error (core/loop.py), with what failed and where."""

    example_id: str
    metric: str  # metric_name: the function, or "checks"
    error: str  # one line

    score = 0.0


def judge(metric: Metric, reply: str, example: Example, *, variant: str = "default", task: str = ""
          ) -> Judgement | MetricFailure:
    """One reply's score (and a spec metric's feedback), or the metric's failure on it."""
    if isinstance(metric, (PythonMetric, ChecksMetric)):
        function = load_metric_function(metric.function) if isinstance(metric, PythonMetric) else None
        try:
            return judge_reply(metric, example, reply, function=function)
        except MetricError as e:
            return MetricFailure(example_id=example.id, metric=metric_name(metric), error=str(e))
    return Judgement(float(score(metric, reply, example, variant=variant, task=task)))


@dataclass(frozen=True)
class Judge:
    """The judge model's client and how it is asked: what a `kind: judge` metric scores with."""

    llm: LLMClient
    params: JudgeParams


async def verdict(metric: Metric, reply: str, example: Example, *, variant: str = "default", task: str = "",
                  judge_with: Judge | None = None) -> Judgement | MetricFailure:
    """`judge`, and for a judge metric the judge model's verdict (an unreadable reply, asked again and still
    unreadable, is the example's MetricFailure)."""
    if not isinstance(metric, JudgeMetric):
        return judge(metric, reply, example, variant=variant, task=task)
    if judge_with is None:
        raise ValueError("a judge metric needs the judge model's client")
    try:
        return await ask_judge(judge_with.llm, metric, example, reply, params=judge_with.params)
    except MetricError as e:
        return MetricFailure(example_id=example.id, metric=metric_name(metric), error=str(e))


@dataclass(frozen=True)
class TaskModelParams:
    """How the task model is asked; part of every cache key, so fixed per run."""

    placement: PromptPlacement = PromptPlacement.END
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 0
    # "single": score the first reply; "second_turn": ask again for the final answer (tasks/second_turn.py).
    answer_extraction: str = "single"
    # metric kind value -> variant ("default" or "paper"), as in OptimizerSettings.metric_variants.
    metric_variants: tuple[tuple[str, str], ...] = ()
    # "question": a multiple-choice second turn names the question's last option; "paper": the option on the line the
    # official code reads (tasks/second_turn.py: paper_end_choice).
    end_choice: str = "question"

    def variant_for(self, metric: Metric) -> str:
        if not isinstance(metric, str):  # a spec has no variants
            return "default"
        return dict(self.metric_variants).get(MetricKind(metric).value, "default")


def task_model_params(config: RunConfig) -> TaskModelParams:
    """How a run asks its task model, from its configuration."""
    opt = config.optimizer
    return TaskModelParams(
        placement=opt.placement,
        temperature=config.task_model.temperature,
        max_tokens=config.task_model.max_tokens,
        seed=opt.seed,
        answer_extraction=opt.answer_extraction,
        metric_variants=tuple(sorted((MetricKind(k).value, v) for k, v in opt.metric_variants.items())),
        end_choice=opt.end_choice,
    )


def judge_params(config: RunConfig) -> JudgeParams:
    """How a run asks its judge model, from its configuration."""
    j = config.judge_model
    return JudgeParams(temperature=j.temperature, max_tokens=j.max_tokens, structured=j.uses_structured_output)


def task_request(prompt: str, example: Example, params: TaskModelParams) -> ChatRequest:
    return ChatRequest(
        messages=build_task_messages(prompt, example.input, placement=params.placement),
        temperature=params.temperature,
        max_tokens=params.max_tokens,
        seed=params.seed,
        purpose=Purpose.ANSWER,
    )


def second_turn_request(
    first: ChatRequest, first_reply: str, text: str, params: TaskModelParams
) -> ChatRequest:
    """The first request's messages, the first reply as the assistant's turn, then the question for the answer."""
    return ChatRequest(
        messages=(*first.messages, ChatMessage("assistant", first_reply), ChatMessage("user", text)),
        temperature=params.temperature,
        max_tokens=SECOND_TURN_MAX_TOKENS,
        seed=params.seed,
        purpose=Purpose.SECOND_TURN,
    )


async def _answer(
    llm: LLMClient, prompt: str, example: Example, *, metric: Metric, params: TaskModelParams, task: str
) -> tuple[str, str | None]:
    """The answer to parse, and the raw second-turn reply where there was one."""
    first = task_request(prompt, example, params)
    reply = await llm.complete(first)
    if params.answer_extraction == "second_turn":
        choice = None
        if params.end_choice == "paper":
            user = next(m.content for m in first.messages if m.role == "user")
            choice = paper_end_choice(user, placement_end=PromptPlacement(params.placement) is PromptPlacement.END)
        text = second_turn_text(task, metric, example.input, choice=choice)
        if text is not None:
            second = await llm.complete(second_turn_request(first, reply.text, text, params))
            return answer_for_parsing(second.text), second.text
    return reply.text, None


async def score_example(
    llm: LLMClient,
    prompt: str,
    example: Example,
    *,
    metric: Metric,
    params: TaskModelParams,
    task: str = "",
    judge_with: Judge | None = None,
) -> float | MetricFailure:
    """One example's score; with second-turn extraction, two task-model calls where the task has a second turn (and
    one judge call for a judge metric)."""
    answer, _ = await _answer(llm, prompt, example, metric=metric, params=params, task=task)
    said = await verdict(metric, answer, example, variant=params.variant_for(metric), task=task, judge_with=judge_with)
    return said if isinstance(said, MetricFailure) else said.score


async def grade_example(
    llm: LLMClient,
    prompt: str,
    example: Example,
    *,
    metric: Metric,
    params: TaskModelParams,
    task: str = "",
    judge_with: Judge | None = None,
) -> tuple[float | MetricFailure, str, str | None]:
    """One example's score, the model's answer as the feedback request shows it, and the metric's feedback (a spec's,
    the judge's reason; None for the built-in kinds): the same calls as a score."""
    answer, second_reply = await _answer(llm, prompt, example, metric=metric, params=params, task=task)
    variant = params.variant_for(metric)
    said = await verdict(metric, answer, example, variant=variant, task=task, judge_with=judge_with)
    shown = shown_prediction(metric, answer, example, second_reply=second_reply, variant=variant, task=task)
    if isinstance(said, MetricFailure):
        return said, shown, None
    return said.score, shown, said.feedback


def shown_prediction(
    metric: Metric, answer: str, example: Example, *, second_reply: str | None, variant: str, task: str = ""
) -> str:
    """The model's answer as feedback_gradient.py shows it: the raw second-turn reply where there was one
    (raw_answer_second_round), else the answer as parsed: the official normalisation (variant paper; ROUGE-L: the
    stripped reply) or gpo-ray's extraction (default; the stripped reply when nothing could be extracted)."""
    if second_reply is not None:
        return second_reply
    if not isinstance(metric, str):  # a spec reads the reply as it is
        return answer.strip()
    metric = MetricKind(metric)
    if variant == "paper":
        if metric is MetricKind.ROUGE_L:
            return answer.strip()
        choice, number, boolean = paper_flags(task, metric, example.answer)
        return paper_normalize(answer.strip(), multiple_choice=choice, number=number, boolean=boolean)
    return extract_answer(metric, answer, question=example.input) or answer.strip()


async def score_examples(
    llm: LLMClient,
    prompt: str,
    examples: Sequence[Example],
    *,
    metric: Metric,
    params: TaskModelParams,
    task: str = "",
    judge_with: Judge | None = None,
) -> list[float | MetricFailure]:
    """Per-example scores in example order. Concurrency is bounded by the client's limit layer."""
    return list(
        await asyncio.gather(
            *(score_example(llm, prompt, ex, metric=metric, params=params, task=task, judge_with=judge_with)
              for ex in examples)
        )
    )


async def grade_examples(
    llm: LLMClient,
    prompt: str,
    examples: Sequence[Example],
    *,
    metric: Metric,
    params: TaskModelParams,
    task: str = "",
    judge_with: Judge | None = None,
) -> list[tuple[float | MetricFailure, str, str | None]]:
    """Per-example (score, shown answer, metric feedback) in example order: what the feedback direction needs."""
    return list(
        await asyncio.gather(
            *(grade_example(llm, prompt, ex, metric=metric, params=params, task=task, judge_with=judge_with)
              for ex in examples)
        )
    )


def mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0
