"""Which roles a validated run sends requests to, and sampled how: the judge only where a task's metric is one."""

from __future__ import annotations

from typing import Any

from gpo_ray.config.presets import ROLES
from gpo_ray.config.schema import JudgeMetric, RunConfig
from gpo_ray.vocabulary import ConfigRole


def judge_metrics(config: RunConfig) -> list[JudgeMetric]:
    """The judge metrics of a run's own tasks (built-in tasks have none)."""
    return [s.metric for s in config.task_sources if isinstance(s.metric, JudgeMetric)]


def used_roles(config: RunConfig) -> tuple[str, ...]:
    """The roles a run sends requests to: the task and optimizer models, and the judge where a metric is one."""
    return tuple(r for r in ROLES if r != ConfigRole.JUDGE_MODEL or judge_metrics(config))


def sampling_settings(config: RunConfig) -> dict[str, dict[str, Any]]:
    """What each role's requests are sampled with, as sent (results.json, `gpo-ray plan`); judge_model only in a run
    that has a judge metric (elsewhere it sends nothing)."""
    return {role: {"model": getattr(config, role).model or ("embedded" if getattr(config, role).is_embedded else None),
                   "temperature": getattr(config, role).temperature,
                   "max_tokens": getattr(config, role).max_tokens}
            for role in used_roles(config)}
