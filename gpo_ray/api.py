"""The Python API and what the `optimize`/`resume` commands run: set up Ray, the endpoints and the actors,
hand the tasks to the controller, write results, tear everything down. It returns what happened and prints
nothing (the CLI prints)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.config import EndpointSpec, LLMRoleConfig, RunConfig, judge_metrics
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.core.results import TaskResult
from gpo_ray.errors import (
    ConfigError,
    InputError,
    MetricErrorsExceeded,
    RunFailed,
    RunInterrupted,
    error_line,
)
from gpo_ray.llm.errors import LLMError
from gpo_ray.logs import configure_logging, library_logs, secret_values
from gpo_ray.observability.metrics import metrics_for, run_metrics_context
from gpo_ray.observability.tracking import check_tracking, open_tracker
from gpo_ray.runtime.local_cluster import (
    scores_in_driver,
    sized_cluster,
    stop_unused_daemons,
)
from gpo_ray.runtime.processes import process_alive
from gpo_ray.runtime.ray_address import ClusterUnreachable, check_ray_address
from gpo_ray.runtime.ray_auth import check_ray_auth, ray_token_values
from gpo_ray.runtime.run_dir import RunDirectory, default_run_dir
from gpo_ray.runtime.signals import sigterm_handler_kept
from gpo_ray.tasks.metric_functions import (
    check_metric_hashes,
    metric_files,
    python_metrics,
    with_metric_hashes,
)
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.vocabulary import NodeResource, Role, RunStatus

# Actors only wait on I/O: they take no CPU slot, so a 2-core machine never deadlocks on placement.
ACTOR_OPTIONS: dict[str, Any] = {"num_cpus": 0, "max_restarts": 4, "max_task_retries": 4}


@dataclass(frozen=True)
class Results:
    run_dir: Path
    status: RunStatus
    tasks: dict[str, TaskResult]
    usage: dict[str, Any]


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


@dataclass(frozen=True)
class Endpoint:
    """A role's servers as resolved at run time (the embedded server's URL is only known once it runs)."""

    specs: tuple[EndpointSpec, ...]
    model: str

    @property
    def base_url(self) -> str:
        return ", ".join(s.base_url for s in self.specs)

    @property
    def urls(self) -> list[str]:
        return [s.base_url for s in self.specs]


@contextlib.contextmanager
def endpoints_for(config: RunConfig, *, log_dir: Path) -> Iterator[tuple[Endpoint, Endpoint, bool, Any]]:
    """(optimizer endpoint, task endpoint, structured output?, embedded server or None) - starting the embedded
    model if a role has no URL. Its log is appended to `log_dir/local-server.log`, where a resume adds to it and
    a death message can point."""
    needs_local = (config.optimizer_model.is_embedded or config.task_model.is_embedded
                   or (bool(judge_metrics(config)) and config.judge_model.is_embedded))
    server = None
    local: Endpoint | None = None
    try:
        if needs_local:
            from gpo_ray.llm.local_server import MODEL_NAME, LocalModelServer

            server = LocalModelServer(log_path=log_dir / "local-server.log")
            local = Endpoint((EndpointSpec(base_url=server.start()),), MODEL_NAME)

        def pick(role: LLMRoleConfig) -> Endpoint:
            if role.is_embedded:
                assert local is not None
                return Endpoint(local.specs, role.model or local.model)
            return Endpoint(tuple(role.all_endpoints()), role.model or "default")

        yield pick(config.optimizer_model), pick(config.task_model), config.optimizer_model.uses_structured_output, server
    finally:
        if server is not None:
            server.stop()


def judge_endpoint(config: RunConfig, server: Any) -> Endpoint | None:
    """The judge model's servers in a run with a `kind: judge` metric (the embedded server when judge_model names
    none: `server`, which endpoints_for started), else None."""
    if not judge_metrics(config):
        return None
    role = config.judge_model
    if role.is_embedded:
        from gpo_ray.llm.local_server import MODEL_NAME

        return Endpoint((EndpointSpec(base_url=server.base_url),), role.model or MODEL_NAME)
    return Endpoint(tuple(role.all_endpoints()), role.model or "default")


@contextlib.contextmanager
def ray_session(address: str | None, *, output: str = "quiet") -> Iterator[bool]:
    """Join `address` (or RAY_ADDRESS), else start a local cluster; reuse one this process already has. Yields
    whether it started a cluster for this run (which then keeps only the daemons the run uses).

    Ray's driver-side messages go into the run's log (driver.jsonl, with where Ray's own session logs are),
    not onto the console; in console `output`, its warnings other than routine notices are shown as gpo-ray lines."""
    import ray

    if ray.is_initialized():
        yield False
        return
    target, _ = ray_target(address)
    with library_logs(console=output == "console", routine=RAY_ROUTINE_NOTICES, detached=("ray",)):
        try:
            # Ray installs SIGTERM handlers of its own in the driver (exit code 15, a C++ stack dump): keep ours.
            with sigterm_handler_kept(on_abort=ray.shutdown):
                context = ray.init(address=target, include_dashboard=False, log_to_driver=False,
                                   configure_logging=False)
        except Exception as e:  # noqa: BLE001 - Ray raises a bare Exception too ("timed out during startup")
            if target == "local":
                raise RunFailed(f"cannot start a local Ray cluster: {error_line(e)}") from None
            raise ClusterUnreachable(f"cannot join the Ray cluster at {target}: {error_line(e)}") from None
        info = context.address_info
        structlog.get_logger().info("ray_started", address=info.get("address"), joined=target != "local",
                                    ray_logs=info.get("session_dir") and os.path.join(info["session_dir"], "logs"))
        if target == "local":
            stop_unused_daemons()  # the dashboard server and the monitors: a one-run cluster does not use them
        try:
            yield target == "local"
        finally:
            ray.shutdown()


# What Ray says on every start of a local cluster: into the run's log only. (Token auth is Ray's safe default.)
RAY_ROUTINE_NOTICES = ("Token authentication is enabled for this Ray cluster",
                       # ray.init on the warm start's thread: the main thread puts back gpo-ray's own handler
                       "SIGTERM handler is not set because current thread is not the main thread")


def ray_target(address: str | None) -> tuple[str, str]:
    """(the Ray address a run joins, where it comes from): the config's or --address, else RAY_ADDRESS (what
    `ray job submit` sets), else "local" - a new cluster even when another one runs on this machine: joining
    is explicit."""
    if address:
        return address, "--address / cluster.address"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"], "the RAY_ADDRESS environment variable"
    return "local", "the default"


def check_cluster(address: str | None) -> None:
    """Fail at once (`ClusterUnreachable`, exit 2) when no Ray head answers at the address a run would join;
    called before anything is written or started. A process that already has Ray (tests, notebooks) uses it.
    A cluster with token authentication gets the token from the environment, or fails here too (`check_ray_auth`)."""
    import ray

    if not ray.is_initialized():
        target, source = ray_target(address)
        check_ray_address(target, source=source)
        check_ray_auth(target, source=source)


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
                 embedder_factory: Any = None, with_evaluators: bool = True, tasks: int = 1,
                 judge: Endpoint | None = None) -> RunActors:
    """The memory actor (its Chroma in `home`/chroma), the refiners and the evaluators (their response cache in
    `cache_dir` when config.cache) of a run directory, or of a sweep directory shared by its sub-runs; and the rate
    limiter they share when a role has requests or tokens per minute. No evaluators without `with_evaluators` (a
    run that scores in its driver, runtime/local_cluster.py)."""
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
    evaluators = [
        EvaluatorActor.options(**ACTOR_OPTIONS, **named("evaluator", i), **shipped,
                               **node_options(res or NodeResource.EVALUATOR, available=available,
                                              required=res is not None))
        .remote(config.task_model, base_url=urls, model=task.model, cache_dir=cache, params=params,
                max_in_flight=config.cluster.evaluator_max_in_flight, metrics=metrics, permits=permits,
                judge=judging)
        for i, (urls, res) in enumerate(_endpoint_groups(task, config.cluster.num_evaluators if with_evaluators
                                                         else 0))
    ]
    refiners = [
        RefinerActor.options(**ACTOR_OPTIONS, **named("refiner", i),
                             **node_options(res or NodeResource.REFINER, available=available,
                                            required=res is not None))
        .remote(config.optimizer_model, base_url=urls, model=opt.model, cache_dir=cache, metrics=metrics,
                permits=permits)
        for i, (urls, res) in enumerate(_endpoint_groups(opt, config.cluster.num_refiners))
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


@contextlib.contextmanager
def failures_named(resume_hint: str, *, event: str = "run_failed") -> Iterator[None]:
    """What ends a run or sweep early becomes one line with the resume hint: a dead embedded server
    (LocalServerDied, named at once instead of retried), or the LLM error behind a failure (RunFailed)."""
    from gpo_ray.llm.local_server import LocalServerDied

    log = structlog.get_logger()
    try:
        yield
    except LocalServerDied as e:
        log.error(event, error=str(e), kind="local_server_died")
        raise LocalServerDied(f"{e}; {resume_hint}") from None
    except MetricErrorsExceeded as e:
        log.error(event, error=str(e), kind="metric_errors")
        raise MetricErrorsExceeded(f"{e}; {resume_hint}") from None
    except Exception as e:
        cause = llm_error_in(e)
        if cause is None:
            unimportable = metric_import_error_in(e)
            if unimportable is None:
                raise
            log.error(event, error=str(unimportable), kind="metric_import")
            raise InputError(f"on an evaluator: {unimportable}; {resume_hint}") from None
        log.error(event, error=str(cause), kind=cause.kind)
        raise RunFailed(f"{cause}; {resume_hint}") from None


def _root_cause(exc: BaseException, matches: Callable[[BaseException], bool]) -> BaseException | None:
    """The first exception behind `exc` (its causes and contexts, and RayTaskError.cause when it comes wrapped from
    an actor) that `matches` and is not itself a wrapper of another."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        cause = getattr(e, "cause", None)
        if matches(e) and not isinstance(cause, BaseException):
            return e
        stack += [cause if isinstance(cause, BaseException) else None, e.__cause__, e.__context__]
    return None


def metric_import_error_in(exc: BaseException) -> InputError | None:
    """A metric function an evaluator could not import (tasks/metric_functions.py), as it comes from the actor."""
    found = _root_cause(exc, lambda e: isinstance(e, InputError) and str(e).startswith("metric function "))
    return found if isinstance(found, InputError) else None


def llm_error_in(exc: BaseException) -> LLMError | None:
    """The LLM error behind an exception, also when it comes wrapped from an actor (RayTaskError.cause)."""
    found = _root_cause(exc, lambda e: isinstance(e, LLMError))
    return found if isinstance(found, LLMError) else None


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


def _execute(config: RunConfig, run_dir: RunDirectory, *, output: str, embedder_factory: Any = None,
             on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    from gpo_ray.controller.controller import Controller
    from gpo_ray.controller.progress import make_progress

    tasks = resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    structlog.contextvars.bind_contextvars(run=run_dir.path.name)  # every driver event of this run carries it
    log = structlog.get_logger()
    resume_hint = f"completed steps are saved, `gpo-ray resume {run_dir.path}` continues"
    if warm_start_applies(config):
        return _execute_warm(config, run_dir, tasks, output=output, embedder_factory=embedder_factory,
                             on_actors_started=on_actors_started, resume_hint=resume_hint)
    try:
        with (endpoints_for(config, log_dir=run_dir.logs_dir) as (opt, task_ep, structured, server),
              ray_session(config.cluster.address, output=output) as own_cluster):
            config = sized_for_run(config, tasks=len(tasks), own_cluster=own_cluster)
            actors = start_actors(config, home=run_dir.path, cache_dir=run_dir.cache_dir, opt=opt, task=task_ep,
                                  embedder_factory=embedder_factory, tasks=len(tasks),
                                  judge=judge_endpoint(config, server))
            memory, refiners, evaluators = actors.memory_router, actors.refiners, actors.evaluators
            if on_actors_started is not None:
                on_actors_started(actors)
            tracker = open_tracker(config, run_dir.path, metrics=metrics_for(run_metrics_context(config, run_dir.path)))
            progress = make_progress(output)
            controller = Controller(config, tasks, run_dir, memory=memory, refiners=refiners, evaluators=evaluators,
                                    progress=progress, structured=structured, tracker=tracker)
            try:
                log.info("run_started", tasks=[t.name for t in tasks], optimizer=opt.base_url, task_model=task_ep.base_url)
                # A dead embedded server stops the run at once, named (LocalServerDied), instead of being retried.
                with failures_named(resume_hint):
                    results = asyncio.run(server.run_while_serving(controller.run()) if server else controller.run())
            finally:
                progress.close()
                kill_actors(actors.all)
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM made one by the CLI; everything above is stopped and saved
        log.warning("run_interrupted")
        raise RunInterrupted(resume_hint, run_dir=run_dir.path) from None
    status = RunStatus.of_tasks(r.status for r in results.values())
    log.info("run_finished", status=status)
    return Results(run_dir=run_dir.path, status=status, tasks=results, usage=controller.usage)


def warm_start_applies(config: RunConfig) -> bool:
    """Whether the run's first calls begin in the driver while Ray and the actors start (controller/warm_start.py):
    on a local cluster this run starts, or one this process already has, when the task model's endpoints name no
    node resource. A run joining a cluster by address keeps every call on the cluster (the driver may be a
    machine that cannot reach the endpoints), and so do a run with a rate limit (every call takes a permit of the
    run-wide limiter, an actor) and `cluster.warm_start: false`."""
    import ray

    if not config.cluster.warm_start or any(s.resource for s in config.task_model.all_endpoints()):
        return False
    if python_metrics(config) or judge_metrics(config):
        return False  # a Python metric and the judge run in the evaluator actors, never in the driver
    if any(r.requests_per_minute or r.tokens_per_minute for r in (config.task_model, config.optimizer_model)):
        return False  # a run-wide rate limit is granted by the limiter actor: the driver would score outside it
    return ray.is_initialized() or ray_target(config.cluster.address)[0] == "local"


def _execute_warm(config: RunConfig, run_dir: RunDirectory, tasks: list[Any], *, output: str, embedder_factory: Any,
                  on_actors_started: Callable[[RunActors], None] | None, resume_hint: str) -> Results:
    """`_execute` with Ray's start and the actors' creation on a thread while the controller begins in the driver."""
    import ray

    from gpo_ray.controller.controller import Controller
    from gpo_ray.controller.progress import make_progress
    from gpo_ray.controller.warm_start import (
        ActorsNotStarted,
        DeferredMetrics,
        StartingActors,
        deferred_handles,
        in_process_generation,
        in_process_scoring,
        log_handover,
    )

    log = structlog.get_logger()
    # Sized as ray_session would say: a cluster started for this run when this process has none and none is joined.
    own_cluster = not ray.is_initialized()
    in_driver = scores_in_driver(config.cluster, tasks=len(tasks), own_cluster=own_cluster)
    config = sized_for_run(config, tasks=len(tasks), own_cluster=own_cluster)
    metrics_context = run_metrics_context(config, run_dir.path)
    try:
        with endpoints_for(config, log_dir=run_dir.logs_dir) as (opt, task_ep, structured, server):
            controller_metrics = DeferredMetrics(metrics_context)
            local = in_process_scoring(config.task_model, base_url=task_ep.urls, model=task_ep.model,
                                       cache_dir=str(run_dir.cache_dir.resolve()) if config.cache else None,
                                       params=task_model_params(config),
                                       max_in_flight=config.cluster.evaluator_max_in_flight,
                                       metrics=metrics_context, role_name=Role.TASK_MODEL)
            generation = in_process_generation(config.optimizer_model, base_url=opt.urls, model=opt.model,
                                               cache_dir=str(run_dir.cache_dir.resolve()) if config.cache else None,
                                               metrics=metrics_context, role_name="optimizer")

            def start(ray_up: Callable[[], None], ray_stack: contextlib.ExitStack) -> tuple[Any, list[Any], list[Any]]:
                ray_stack.enter_context(ray_session(config.cluster.address, output=output))
                ray_up()
                for deferred in (controller_metrics, local.metrics, generation.metrics):
                    if deferred is not None:
                        deferred.attach()
                if starting.abandoned.is_set():  # the run stopped while Ray started: no actors for it
                    raise ActorsNotStarted("the run stopped before its actors were started")
                actors = start_actors(config, home=run_dir.path, cache_dir=run_dir.cache_dir, opt=opt, task=task_ep,
                                      embedder_factory=embedder_factory, with_evaluators=not in_driver,
                                      tasks=len(tasks))
                all_started.extend(actors.all)
                if on_actors_started is not None:
                    on_actors_started(actors)
                return actors.memory_router, actors.refiners, actors.evaluators

            all_started: list[Any] = []  # every actor start() made, the rate limiter included

            starting = StartingActors(start)
            starting.begin()
            memory, refiners, evaluators = deferred_handles(
                starting, refiners=config.cluster.num_refiners or 1,
                evaluators=1 if in_driver else config.cluster.num_evaluators or 1, local=local,
                generation=generation)
            log.info("scoring_placed", in_driver=in_driver, evaluator_actors=0 if in_driver else len(evaluators))
            tracker = open_tracker(config, run_dir.path, metrics=controller_metrics)
            progress = make_progress(output)
            controller = Controller(config, tasks, run_dir, memory=memory, refiners=refiners, evaluators=evaluators,
                                    progress=progress, structured=structured, tracker=tracker,
                                    metrics=controller_metrics)

            async def run() -> dict[str, TaskResult]:
                try:
                    work = starting.supervise(controller.run())
                    return await (server.run_while_serving(work) if server else work)
                finally:
                    await local.close()
                    await generation.close()

            try:
                log.info("run_started", tasks=[t.name for t in tasks], optimizer=opt.base_url,
                         task_model=task_ep.base_url, warm_start=True)
                with failures_named(resume_hint):
                    results = asyncio.run(run())
            finally:
                progress.close()
                started = starting.finish()
                log_handover(local, starting=starting, generation=generation)
                try:
                    if ray.is_initialized():  # none started when the run stopped first: logged as 0 stopped
                        kill_actors([] if started is None else all_started)
                finally:
                    starting.close()  # Ray's shutdown, on the thread that started it
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM made one by the CLI; everything above is stopped and saved
        log.warning("run_interrupted")
        raise RunInterrupted(resume_hint, run_dir=run_dir.path) from None
    status = RunStatus.of_tasks(r.status for r in results.values())
    log.info("run_finished", status=status)
    return Results(run_dir=run_dir.path, status=status, tasks=results, usage=controller.usage)


def sized_for_run(config: RunConfig, *, tasks: int, own_cluster: bool) -> RunConfig:
    """The config with the actor counts it leaves unset filled in for this run (runtime/local_cluster.py)."""
    cluster = sized_cluster(config.cluster, tasks=tasks, own_cluster=own_cluster)
    structlog.get_logger().info("actors_sized", refiners=cluster.num_refiners, evaluators=cluster.num_evaluators)
    return config.model_copy(update={"cluster": cluster})


def setup_logs(config: RunConfig, logs_dir: Path, output: str) -> None:
    configure_logging(mode=output, log_file=logs_dir / "driver.jsonl",
                      secrets=secret_values([config.task_model.api_key_env, config.optimizer_model.api_key_env,
                                             config.judge_model.api_key_env, config.cluster.chroma_token_env])
                      + ray_token_values())


def optimize(config: RunConfig, *, output: str = "quiet", embedder_factory: Any = None,
             on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    """Run GPO on the config's tasks; the Python twin of `gpo-ray optimize`."""
    if config.run_dir is None:
        config = config.model_copy(update={"run_dir": default_run_dir()})
    # Validate the data, the metrics and the tracking wanted before anything is written or started.
    resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources)
    config = with_metric_hashes(config)  # a Python metric that cannot be imported stops here
    check_tracking(config)
    check_cluster(config.cluster.address)
    run_dir = RunDirectory(config.run_dir)
    run_dir.create(config)
    setup_logs(config, run_dir.logs_dir, output)
    return _execute(config, run_dir, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)


def resume(run_path: Path, *, address: str | None = None, output: str = "quiet", embedder_factory: Any = None,
           on_actors_started: Callable[[RunActors], None] | None = None) -> Results:
    """Continue a run from its last completed step, with the config it was started with."""
    run_dir = RunDirectory(run_path)
    config = run_dir.load_config()
    check_metric_hashes(config)  # a Python metric that cannot be imported, or was changed, stops here
    # Refuse damaged or foreign checkpoints (and missing data) before anything is started or written.
    for task in resolve_tasks(config.tasks, data_dir=config.data_dir, sources=config.task_sources):
        run_dir.completed_steps(task.name, fingerprint=config.fingerprint())
    check_tracking(config)
    if address is not None:
        config = config.model_copy(update={"cluster": config.cluster.model_copy(update={"address": address})})
    check_cluster(config.cluster.address)
    setup_logs(config, run_dir.logs_dir, output)
    structlog.get_logger().info("run_resumed", run_dir=str(run_path))
    return _execute(config, run_dir, output=output, embedder_factory=embedder_factory,
                    on_actors_started=on_actors_started)
