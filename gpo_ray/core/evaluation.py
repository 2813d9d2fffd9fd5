"""Scoring a prompt on examples with the task model: the same code in-process and in evaluator actors."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from gpo_ray.llm.protocol import ChatRequest, LLMClient
from gpo_ray.tasks.metrics import score
from gpo_ray.tasks.placement import build_task_messages
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind, PromptPlacement


@dataclass(frozen=True)
class TaskModelParams:
    """How the task model is asked; part of every cache key, so fixed per run."""

    placement: PromptPlacement = PromptPlacement.END
    temperature: float = 0.0
    max_tokens: int | None = 256
    seed: int | None = 0


def task_request(prompt: str, example: Example, params: TaskModelParams) -> ChatRequest:
    return ChatRequest(
        messages=build_task_messages(prompt, example.input, placement=params.placement),
        temperature=params.temperature,
        max_tokens=params.max_tokens,
        seed=params.seed,
    )


async def score_example(
    llm: LLMClient, prompt: str, example: Example, *, metric: MetricKind, params: TaskModelParams
) -> float:
    reply = await llm.complete(task_request(prompt, example, params))
    return float(score(metric, reply.text, example))


async def score_examples(
    llm: LLMClient,
    prompt: str,
    examples: Sequence[Example],
    *,
    metric: MetricKind,
    params: TaskModelParams,
) -> list[float]:
    """Per-example scores in example order. Concurrency is bounded by the client's limit layer."""
    return list(
        await asyncio.gather(*(score_example(llm, prompt, ex, metric=metric, params=params) for ex in examples))
    )


def mean(scores: Sequence[float]) -> float:
    return sum(scores) / len(scores) if scores else 0.0
