"""The actors of a run or a sweep: where they go (node resources, endpoint pinning), what they are given (the
metric files shipped to the cluster, the run-wide rate limiter), and how they are stopped before the driver returns."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import RunConfig
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.errors import ConfigError, RunFailed, error_line
from gpo_ray.launch.endpoints import Endpoint
from gpo_ray.observability.metrics import run_metrics_context
from gpo_ray.runtime.processes import process_alive
from gpo_ray.tasks.metric_functions import metric_files
from gpo_ray.vocabulary import NodeResource

# Actors only wait on I/O: they take no CPU slot, so a 2-core machine never deadlocks on placement.
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": 4, "max_task_retries": 4}


@dataclass(frozen=True)
class RunActors:
    """The actors of a running optimization, handed to `on_actors_started` (fault tests, placement checks)."""

    memory: Any  # the first memory shard's actor (the only one unless cluster.memory_shards > 1)
    refiners: list[Any]
    evaluators: list[Any]
    limiter: Any = None  # the run-wide rate limiter, when a role has requests/tokens per minute
    memory_shards: list[Any] = field(default_factory=list)  # every memory shard's actor, in shard order
    memory_router: Any = None  # ShardedMemory over memory_shards: what the controller talks to

    @property
    def all(self) -> list[Any]:
        return [*(self.memory_shards or [self.memory]), *self.refiners, *self.evaluators,
                *([self.limiter] if self.limiter is not None else [])]


def node_options(resource: str | None, *, available: dict[str, float], required: bool = False) -> dict[str, Any]:
    """Actor options that put it on nodes carrying `resource`, spread over them; anywhere when the cluster
    has no such resource (one machine). A resource named by an endpoint must exist."""
    if resource and resource in available:
        return {"resources": {str(resource): 0.01}, "scheduling_strategy": "SPREAD"}  # plain str for Ray
    if resource and required:
        raise ConfigError(f"endpoint resource {resource!r} is on no node of the Ray cluster "
                          f"(nodes offer: {', '.join(sorted(k for k in available if not k.startswith('node:'))) or '-'})")
    return {"scheduling_strategy": "SPREAD"}


def _endpoint_groups(ep: Endpoint, count: int) -> list[tuple[list[str], str | None]]:
    """How `count` actors of a role split over its endpoints: pinned per endpoint when endpoints name
    resources, else every actor balances over all endpoints."""
    if not any(s.resource for s in ep.specs):
        return [(ep.urls, None)] * count
    specs = [ep.specs[i % len(ep.specs)] for i in range(max(count, len(ep.specs)))]  # at least one per endpoint
    return [([s.base_url], s.resource) for s in specs]


def callers_of(groups: list[tuple[list[str], str | None]]) -> list[int]:
    """Per actor of `_endpoint_groups`: how many of the role's actors call its endpoints (those pinned to the same
    one, or all of them): the actors the role's cap of requests in flight per endpoint is divided among."""
    return [sum(1 for other, _ in groups if set(other) & set(urls)) for urls, _ in groups]


def shipped_modules(files: list[str]) -> dict[str, Any]:
    """A runtime_env whose py_modules are `files`, uploaded to the cluster now: an actor's own runtime_env takes
    only URIs (local paths are for the job's, given to ray.init, and a run may join a session already started).
    Uses the upload ray.init itself calls (ray._private.runtime_env.py_modules, Ray 2.60)."""
    from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

    try:
        return upload_py_modules_if_needed({"py_modules": list(files)}, include_gitignore=False,
                                           scratch_dir=os.getcwd())
    except Exception as e:  # noqa: BLE001 - Ray's RuntimeEnvSetupError, or a file it will not take
        raise RunFailed(f"cannot ship the metric files {', '.join(files)} to the cluster: {error_line(e)}") from None


def start_actors(config: RunConfig, *, home: Path, cache_dir: Path, opt: Endpoint, task: Endpoint,
                 embedder_factory: Any = None, with_evaluators: bool = True, with_refiners: bool = True, tasks: int = 1,
                 judge: Endpoint | None = None) -> RunActors:
    """The memory actor (its Chroma in `home`/chroma), the refiners and the evaluators (their response cache in
    `cache_dir` when config.cache) of a run directory, or of a sweep directory shared by its sub-runs; and the rate
    limiter they share when a role has requests or tokens per minute. No evaluators without `with_evaluators`, no
    refiners without `with_refiners` (a run that scores or generates in its driver, runtime/local_cluster.py)."""
    import ray

    from gpo_ray.actors.evaluator import EvaluatorActor, JudgeEndpoint
    from gpo_ray.actors.limiter import LimiterClient, limiter_name, start_rate_limiter
    from gpo_ray.actors.memory import MEMORY_NAMESPACE, wait_until_gone
    from gpo_ray.actors.memory_shards import start_memory_shards
    from gpo_ray.actors.refiner import RefinerActor
    from gpo_ray.core.evaluation import judge_params
    from gpo_ray.memory.sharding import load_or_create_layout

    cache = str(cache_dir.resolve()) if config.cache else None
    metrics = run_metrics_context(config, home)
    # Memory actors per run directory (one per shard), named so that a resumed run waits for a killed driver's
    # ones to go; one collection per run and shard, so runs sharing a Chroma server never see each other's.
    run_id = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:16]
    # Requests/tokens per minute hold for the whole run: one limiter, which every actor's clients lease from.
    limiter = permits = None
    if any(r.requests_per_minute or r.tokens_per_minute
           for r in (config.optimizer_model, config.task_model, *([config.judge_model] if judge else []))):
        name = limiter_name(run_id)
        wait_until_gone(name)
        limiter, permits = start_rate_limiter(name), LimiterClient(name)
    available = ray.cluster_resources()
    # Evaluators first, then refiners, then the memory actor: Ray starts a few worker processes at a time, and
    # the run's first calls (the initial prompt's eval score) need only an evaluator.
    params = task_model_params(config)
    # Named by run and driver (`ray list actors` tells whose they are; tools outside the driver can find them);
    # the driver part keeps a resumed driver's names clear of a killed one's actors that Ray is still removing.
    def named(role: str, i: int) -> dict[str, Any]:
        return {"name": f"gpo-{role}-{run_id}-{driver}-{i}", "namespace": MEMORY_NAMESPACE}

    driver = secrets.token_hex(3)
    # Metric files (`function: path/to/file.py:name`) reach every node's evaluators, where Python metrics run.
    files = metric_files(config)
    shipped: dict[str, Any] = {"runtime_env": shipped_modules(files)} if files else {}
    # A `kind: judge` metric is judged in the evaluators too, where the replies arrive.
    judging = None if judge is None else JudgeEndpoint(config.judge_model, base_url=judge.urls, model=judge.model,
                                                       params=judge_params(config))
    # Each role's cap of requests in flight per endpoint (max_in_flight) is divided among the actors that call it.
    evaluator_groups = _endpoint_groups(task, (config.cluster.num_evaluators or 1) if with_evaluators else 0)
    evaluators = [
        EvaluatorActor.options(**ACTOR_OPTIONS, **named("evaluator", i), **shipped,
                               **node_options(res or NodeResource.EVALUATOR, available=available,
                                              required=res is not None))
        .remote(config.task_model, base_url=urls, model=task.model, cache_dir=cache, params=params,
                max_in_flight=config.cluster.evaluator_max_in_flight or 1, metrics=metrics, permits=permits,
                judge=judging, callers=callers, judge_callers=len(evaluator_groups))
        for i, ((urls, res), callers) in enumerate(zip(evaluator_groups, callers_of(evaluator_groups), strict=True))
    ]
    refiner_groups = _endpoint_groups(opt, config.cluster.num_refiners or 1) if with_refiners else []
    refiners = [
        RefinerActor.options(**ACTOR_OPTIONS, **named("refiner", i),
                             **node_options(res or NodeResource.REFINER, available=available,
                                            required=res is not None))
        .remote(config.optimizer_model, base_url=urls, model=opt.model, cache_dir=cache, metrics=metrics,
                permits=permits, callers=callers)
        for i, ((urls, res), callers) in enumerate(zip(refiner_groups, callers_of(refiner_groups), strict=True))
    ]
    # One collection per run, so that runs sharing a Chroma server never see each other's trajectories.
    if embedder_factory is None and config.embedder.kind == "openai":
        from gpo_ray.llm.embedding import OpenAIEmbedder

        e = config.embedder
        embedder_factory = functools.partial(OpenAIEmbedder, base_url=e.base_url, model=e.model,
                                             api_key_env=e.api_key_env)
    layout = load_or_create_layout(home, run_id=run_id, wanted=config.cluster.memory_shards, tasks=tasks)
    memory = start_memory_shards(run_dir=home.resolve(), cluster=config.cluster, layout=layout,
                                 embedder_factory=embedder_factory)
    return RunActors(memory.handles[0], refiners, evaluators, limiter, memory_shards=memory.handles,
                     memory_router=memory)


def kill_actors(handles: list[Any], *, timeout_s: float = 10.0) -> None:
    """Stop the run's actors and return once they are gone.

    Each actor first cancels the calls still running in it (`stop`): an evaluator in a retry backoff could
    otherwise send one more request after optimize() has returned, answered but never cached, so a resume right
    after (same process, endpoint back) would ask it again. Then ray.kill, and a wait until the processes on this
    node have exited. No call is left to be cut short by the kill or sent to a killed actor: Ray would retry it
    (max_task_retries) and print `(raylet) Task ... failed` on the console of a run that went well."""
    import time

    import ray

    deadline = time.monotonic() + timeout_s
    stops = [h.stop.options(max_task_retries=0).remote() for h in handles]
    here = ray.get_runtime_context().get_node_id()
    pids: list[int] = []
    cancelled = unanswered = 0
    for ref in stops:
        try:
            node, pid, n = ray.get(ref, timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        except Exception:  # noqa: BLE001 - dead, or still restarting after a crash: the kill below is what is left
            unanswered += 1
            continue
        cancelled += n
        if node == here:
            pids.append(pid)
    for h in handles:
        with contextlib.suppress(Exception):
            ray.kill(h, no_restart=True)
    while any(process_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    structlog.get_logger().info("actors_stopped", actors=len(handles), cancelled_tasks=cancelled,
                                not_answering=unanswered, still_running=sum(map(process_alive, pids)))
