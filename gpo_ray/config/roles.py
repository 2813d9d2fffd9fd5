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


def concurrency_settings(config: RunConfig) -> dict[str, dict[str, Any]]:
    """Per role the run sends requests to, the calls in flight to each of its endpoints (`gpo-ray plan`): the cap
    for the whole run (`max_in_flight`, or its default), whether the limit is learned below it (adaptive) and what it
    starts at (per actor that calls the endpoint: the cap is divided among them, runtime/local_cluster.py)."""
    out = {}
    for role in used_roles(config):
        r = getattr(config, role)
        a = r.adaptive_concurrency
        out[role] = {"max_in_flight": r.in_flight_cap, "set": r.max_in_flight is not None, "adaptive": a.enabled,
                     "start": min(max(a.min, a.initial), r.in_flight_cap) if a.enabled else r.in_flight_cap}
    return out
