"""What `gpo-ray check` runs: the initial prompt on the first few examples of a split, scored in this process by the
task's metric, beside what a full run would cost. No Ray: a handful of task-model calls through the same client
stack (llm/stack.py) and the same grading (core/evaluation.py) the evaluator actors use. It returns what happened
and prints nothing (the CLI prints).
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass, replace
from typing import Any

from gpo_ray.config import RunConfig, judge_metrics, sampling_settings
from gpo_ray.core.evaluation import (
    Judge,
    MetricFailure,
    grade_example,
    judge_params,
    mean,
    task_model_params,
)
from gpo_ray.core.loop import settings_for_task
from gpo_ray.core.plan import TaskPlan, plan_task
from gpo_ray.errors import DataError, RunFailed
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.errors import LLMError
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.tasks.metric_functions import with_metric_hashes
from gpo_ray.tasks.metric_specs import metric_name
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Example, Task
from gpo_ray.vocabulary import Role

SPLITS = ("train", "eval", "test")


@dataclass(frozen=True)
class CheckedExample:
    """One example as the task model answered it and the metric scored it."""

    id: str
    input: str
    reply: str  # the task model's reply as sent back (the second turn's, where there was one)
    answer: str  # what the metric was given to read: the reply (a spec), or the answer extracted from it (a kind)
    score: float  # 0 for a metric error, as in a run
    feedback: str | None  # the metric's text (a spec's; None for the built-in kinds, or when it said nothing)
    metric_error: str | None  # the metric's failure on this reply (one line), else None


@dataclass(frozen=True)
class TaskCheck:
    task: str
    metric: str  # metric_name: the kind, the function, or "checks"
    split: str
    prompt: str  # the initial prompt
    examples: tuple[CheckedExample, ...]
    plan: TaskPlan  # what a full run would cost (`gpo-ray plan`'s figures)

    @property
    def mean(self) -> float:
        return mean([e.score for e in self.examples])

    @property
    def metric_errors(self) -> int:
        return sum(e.metric_error is not None for e in self.examples)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task, "metric": self.metric, "split": self.split, "prompt": self.prompt,
                "examples": [asdict(e) for e in self.examples], "mean": self.mean,
                "metric_errors": self.metric_errors, "plan": self.plan.to_dict()}


@dataclass(frozen=True)
class CheckResult:
    tasks: tuple[TaskCheck, ...]
    sampling: dict[str, dict[str, Any]]  # config.sampling_settings: each role's model, temperature, max_tokens
    task_model_requests: int  # what this check asked of the task model
    judge_requests: int | None = None  # what it asked of the judge model (None: no task is scored by a judge)

    def to_dict(self) -> dict[str, Any]:
        usage = {Role.TASK_MODEL.value: {"requests": self.task_model_requests}}
        if self.judge_requests is not None:
            usage[Role.JUDGE.value] = {"requests": self.judge_requests}
        return {"tasks": {t.task: t.to_dict() for t in self.tasks}, "sampling": self.sampling, "usage": usage}


class _LastReply:
    """A client that keeps the text of the last reply it passed on: the raw reply beside the grading's answer."""

    def __init__(self, inner: LLMClient) -> None:
        self.inner = inner
        self.text = ""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        response = await self.inner.complete(request)
        self.text = response.text
        return response


def check_examples(task: Task, split: str, count: int) -> tuple[Example, ...]:
    """The first `count` examples of the task's split; DataError when it has none."""
    examples = getattr(task, split)[:count]
    if not examples:
        raise DataError(f"task {task.name!r}: split {split!r} has no examples to check")
    return examples


async def check_task(llm: LLMClient, task: Task, config: RunConfig, *, split: str, count: int,
                     judge_with: Judge | None = None) -> TaskCheck:
    """The task's initial prompt on the first `count` examples of `split`, graded as the evaluators grade (a judge
    metric by `judge_with`, the judge model)."""
    settings = settings_for_task(task, config.optimizer)
    params = task_model_params(config)
    if task.placement is not None:  # a task source's own placement, as the controller scores it
        params = replace(params, placement=settings.placement)
    prompt = settings.initial_prompt

    async def one(example: Example) -> CheckedExample:
        seen = _LastReply(llm)
        verdict, answer, feedback = await grade_example(seen, prompt, example, metric=task.metric, params=params,
                                                        task=task.name, judge_with=judge_with)
        failed = isinstance(verdict, MetricFailure)
        return CheckedExample(id=example.id, input=example.input, reply=seen.text, answer=answer,
                              score=0.0 if failed else verdict, feedback=None if failed else feedback,
                              metric_error=verdict.error if failed else None)

    examples = await asyncio.gather(*(one(ex) for ex in check_examples(task, split, count)))
    plan = plan_task(task, config.optimizer, optimizer_max_tokens=config.optimizer_model.max_tokens or 256,
                     task_max_tokens=config.task_model.max_tokens or 256,
                     judge_max_tokens=config.judge_model.max_tokens or 256)
    return TaskCheck(task=task.name, metric=metric_name(task.metric), split=split, prompt=prompt,
                     examples=tuple(examples), plan=plan)


def check(config: RunConfig, *, examples: int = 5, split: str = "eval") -> CheckResult:
    """Score each task's initial prompt on the first `examples` examples of `split` against the configured task model
    (the embedded one when it names no endpoint). Bad data or a metric that cannot be imported stops before any call
    (InputError, one line); an endpoint that fails past its retries is RunFailed."""
    if split not in SPLITS:
        raise DataError(f"split {split!r}: one of {', '.join(SPLITS)}")
    if examples < 1:
        raise DataError(f"--examples {examples}: at least 1")
    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    with_metric_hashes(config)  # a Python metric that cannot be imported stops here, as `optimize` does
    for task in tasks:
        check_examples(task, split, examples)
    role = config.task_model
    judged = bool(judge_metrics(config))
    counters, judge_counters = UsageCounters(), UsageCounters()

    def where(of: Any, local: str | None) -> tuple[list[str], str]:
        from gpo_ray.llm.local_server import MODEL_NAME

        if of.is_embedded:
            return [local or ""], of.model or MODEL_NAME
        return [e.base_url for e in of.all_endpoints()], of.model or "default"

    async def run(local: str | None) -> list[TaskCheck]:
        urls, model = where(role, local)
        llm = build_client(role, role_name=Role.TASK_MODEL, base_url=urls, model=model, cache=None, counters=counters)
        judge = None
        if judged:  # the judge model, asked as the evaluators ask it (its own role and counters)
            urls, model = where(config.judge_model, local)
            judge = Judge(build_client(config.judge_model, role_name=Role.JUDGE, base_url=urls, model=model,
                                       cache=None, counters=judge_counters), judge_params(config))
        try:
            return [await check_task(llm, t, config, split=split, count=examples, judge_with=judge) for t in tasks]
        finally:
            await close_client(llm)
            if judge is not None:
                await close_client(judge.llm)

    try:
        if role.is_embedded or (judged and config.judge_model.is_embedded):
            from gpo_ray.llm.local_server import LocalModelServer

            with LocalModelServer() as server:
                checked = asyncio.run(server.run_while_serving(run(server.base_url)))
        else:
            checked = asyncio.run(run(None))
    except LLMError as e:
        raise RunFailed(f"the task model failed: {e}") from None
    requests = counters.snapshot().get("requests", 0)
    return CheckResult(tasks=tuple(checked), sampling=sampling_settings(config), task_model_requests=requests,
                       judge_requests=judge_counters.snapshot().get("requests", 0) if judged else None)
