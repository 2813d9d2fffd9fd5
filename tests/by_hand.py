"""What a run's scores should be, worked out by hand: the task model's requests for a prompt sent again to the same
endpoint, and their replies scored by the task's metric called directly (not through the evaluators)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gpo_ray.config import ChecksMetric, load_config
from gpo_ray.core.evaluation import task_model_params, task_request
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.tasks.metric_functions import load_metric_function
from gpo_ray.tasks.metric_specs import (
    Judgement,
    example_fields,
    judge_reply,
    judgement_of,
)
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.tasks.types import Example, Task


def task_of(config_path: str | Path, task_name: str | None = None) -> Task:
    config = load_config(Path(config_path))
    tasks = resolve_tasks(config.tasks, data_dir=None, sources=config.task_sources)
    (task,) = tasks if task_name is None else [t for t in tasks if t.name == task_name]
    return task


def replies_by_hand(config_path: str | Path, base_url: str, prompt: str, examples: list[Example]) -> list[str]:
    """The task model's replies to `prompt` on `examples`, asked again with the run's own request settings."""
    config = load_config(Path(config_path))
    client = build_client(config.task_model, role_name="task_model", base_url=base_url, model="fake-llm", cache=None,
                          counters=UsageCounters())
    params = task_model_params(config)

    async def replies() -> list[str]:
        try:
            return [(await client.complete(task_request(prompt, ex, params))).text for ex in examples]
        finally:
            await close_client(client)

    return asyncio.run(replies())


def verdict_by_hand(task: Task, example: Example, reply: str) -> Judgement:
    """The task's metric (checks or a Python function) on one reply, called directly."""
    if isinstance(task.metric, ChecksMetric):
        return judge_reply(task.metric, example, reply)
    return judgement_of(load_metric_function(task.metric.function)(example_fields(example), reply))
