"""`RunSession`: what a run or a sweep stands on, as one context manager - the endpoints (the embedded llama.cpp
server included), the Ray session (started, joined or reused, and shut down), the actors with a cold or a warm start,
and their teardown. `optimize`, `resume`, `sweep` and `resume_sweep` build their controllers on it and hand it the
coroutine to run.

Cold start: Ray and the actors are up when the `with` block begins. Warm start (controller/warm_start.py): the block
begins at once with stand-ins for the actor handles while a thread starts Ray and the actors. That thread owns the
Ray session then: the driver must not touch Ray until the start is done (a `ray.init` of its own, or a Ray metric
made while the thread is inside `ray.init`, would race it), so the driver's metrics come from `metrics()`, held
until the thread has Ray up, and the actors are killed only after `StartingActors.finish()`."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import structlog

from gpo_ray.config import RunConfig, judge_metrics
from gpo_ray.controller.progress import ProgressReporter, make_progress
from gpo_ray.controller.warm_start import (
    Actors,
    ActorsNotStarted,
    DeferredMetrics,
    InProcessGeneration,
    InProcessScoring,
    StartingActors,
    deferred_handles,
    in_process_generation,
    in_process_scoring,
    log_handover,
)
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.core.results import TaskResult
from gpo_ray.errors import RunInterrupted
from gpo_ray.launch.actors import RunActors, kill_actors, start_actors
from gpo_ray.launch.cluster import on_one_machine, ray_session, ray_target, sized_for_run
from gpo_ray.launch.endpoints import Endpoint, endpoints_for, judge_endpoint
from gpo_ray.launch.failures import failures_named
from gpo_ray.observability.metrics import Metrics, MetricsContext, metrics_for, run_metrics_context
from gpo_ray.runtime.local_cluster import generates_in_driver, scores_in_driver
from gpo_ray.tasks.metric_functions import python_metrics
from gpo_ray.vocabulary import Role, RunStatus

T = TypeVar("T")


@dataclass(frozen=True)
class Results:
    run_dir: Path
    status: RunStatus
    tasks: dict[str, TaskResult]
    usage: dict[str, Any]

    @classmethod
    def of(cls, run_dir: Path, tasks: dict[str, TaskResult], usage: dict[str, Any]) -> Results:
        """A run's (or a sweep's sub-run's) results; its status follows from its tasks'."""
        return cls(run_dir=run_dir, status=RunStatus.of_tasks(r.status for r in tasks.values()), tasks=tasks,
                   usage=usage)


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


class RunSession:
    """The endpoints, the Ray session and the actors of one run (`kind="run"`) or one sweep (`kind="sweep"`, every
    sub-run on the same actors), from `with` to its end; the events it logs are named by `kind` (`run_started`,
    `sweep_failed`, ...).

    Inside the block: `config` (the actor counts sized for this run), `memory`, `refiners` and `evaluators` (actor
    handles, or their warm-start stand-ins), `structured`, `progress`, and `metrics()`; `run(main)` runs the
    controllers' coroutine. Leaving the block stops the actors, Ray (when the session started it) and the embedded
    server; a Ctrl-C anywhere in it becomes `RunInterrupted` with the resume hint, after that teardown."""

    def __init__(self, config: RunConfig, *, home: Path, cache_dir: Path, log_dir: Path, tasks: int, output: str,
                 kind: str = "run", embedder_factory: Any = None,
                 on_actors_started: Callable[[RunActors], None] | None = None,
                 warm_start: bool | None = None) -> None:
        self.config = config
        self.home = home  # the run directory (memory, actor names), or the sweep directory
        self.cache_dir = cache_dir
        self.log_dir = log_dir
        self.tasks = tasks  # how many task loops the actors serve (every sub-run's, in a sweep)
        self.output = output
        self.kind = kind
        self.embedder_factory = embedder_factory
        self.on_actors_started = on_actors_started
        self.warm = warm_start_applies(config) if warm_start is None else warm_start
        self.resume_hint = f"completed steps are saved, `gpo-ray resume {home}` continues"
        self.log = structlog.get_logger()
        # Known once the block begins.
        self.opt: Endpoint | None = None
        self.task: Endpoint | None = None
        self.structured = False
        self.server: Any = None
        self.memory: Any = None
        self.refiners: list[Any] = []
        self.evaluators: list[Any] = []
        self.progress: ProgressReporter | None = None
        self._stack = contextlib.ExitStack()
        self._actors: RunActors | None = None  # a cold start's
        self._starting: StartingActors | None = None  # a warm start's
        self._warm_started: list[Any] = []  # every actor the warm start made, the rate limiter included
        self._local: InProcessScoring | None = None
        self._generation: InProcessGeneration | None = None
        self._clients_open = False
        # The driver's metrics of a warm start, held until its thread has Ray up.
        self._metrics_lock = threading.Lock()
        self._ray_up = not self.warm
        self._held_metrics: list[DeferredMetrics] = []

    # the block ---------------------------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            if self.warm:
                self._open_warm()
            else:
                self._open_cold()
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)  # stops what did start; a Ctrl-C becomes RunInterrupted
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        interrupted = (exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
                       and not issubclass(exc_type, RunInterrupted))  # one already named keeps its hint
        try:
            self._teardown()
        except RunInterrupted:
            raise
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:  # Ctrl-C, or SIGTERM made one by the CLI; everything is stopped and saved
            self.log.warning(f"{self.kind}_interrupted")
            raise RunInterrupted(self.resume_hint, run_dir=self.home) from None

    def metrics(self, context: MetricsContext | None, **tags: str) -> Metrics:
        """The driver's metrics for `context` (metrics_for): in a warm start, held until its thread has Ray up."""
        if not self.warm:
            return metrics_for(context, **tags)
        deferred = DeferredMetrics(context, **tags)
        with self._metrics_lock:
            if not self._ray_up:
                self._held_metrics.append(deferred)
                return deferred
        deferred.attach()
        return deferred

    def run(self, main: Coroutine[Any, Any, T], **started: Any) -> T:
        """Run `main` (the controllers) to its end, logging `<kind>_started` with `started` first. What ends it
        early is named in one line with the resume hint (failures.py); a dead embedded server stops it at once."""
        assert self.opt is not None and self.task is not None, "run() inside the `with` block"
        self.log.info(f"{self.kind}_started", **started, optimizer=self.opt.base_url, task_model=self.task.base_url,
                      **({"warm_start": True} if self.warm else {}))
        with failures_named(self.resume_hint, event=f"{self.kind}_failed"):
            return asyncio.run(self._serving(main))

    # cold and warm starts ----------------------------------------------------------------------------------------
    def _open_cold(self) -> None:
        self.opt, self.task, self.structured, self.server = self._stack.enter_context(
            endpoints_for(self.config, log_dir=self.log_dir))
        started_here = self._stack.enter_context(ray_session(self.config.cluster.address, output=self.output))
        self.config = sized_for_run(self.config, tasks=self.tasks, one_machine=on_one_machine(started_here=started_here))
        self._actors = start_actors(self.config, home=self.home, cache_dir=self.cache_dir, opt=self.opt,
                                    task=self.task, embedder_factory=self.embedder_factory, tasks=self.tasks,
                                    judge=judge_endpoint(self.config, self.server))
        self.memory, self.refiners, self.evaluators = (self._actors.memory_router, self._actors.refiners,
                                                       self._actors.evaluators)
        if self.on_actors_started is not None:
            self.on_actors_started(self._actors)
        self.progress = make_progress(self.output)

    def _open_warm(self) -> None:
        import ray

        # Sized as ray_session would say: a cluster started for this run when this process has none (a warm start
        # never joins one by address), else the one this process has, which may be this machine alone.
        one_machine = on_one_machine(started_here=not ray.is_initialized())
        in_driver = scores_in_driver(self.config.cluster, tasks=self.tasks, one_machine=one_machine)
        # Generation too, unless the optimizer's endpoints are pinned to nodes (their refiners must run there).
        generates_here = (generates_in_driver(self.config.cluster, tasks=self.tasks, one_machine=one_machine)
                          and not any(s.resource for s in self.config.optimizer_model.all_endpoints()))
        self.config = config = sized_for_run(self.config, tasks=self.tasks, one_machine=one_machine)
        metrics_context = run_metrics_context(config, self.home)
        self.opt, self.task, self.structured, self.server = self._stack.enter_context(
            endpoints_for(config, log_dir=self.log_dir))
        cache = str(self.cache_dir.resolve()) if config.cache else None
        self._local = in_process_scoring(config.task_model, base_url=self.task.urls, model=self.task.model,
                                         cache_dir=cache, params=task_model_params(config),
                                         max_in_flight=config.cluster.evaluator_max_in_flight or 1,
                                         metrics=metrics_context, role_name=Role.TASK_MODEL,
                                         callers=config.cluster.num_evaluators or 1)
        # The driver takes one actor's share of each role's cap while they start (scoring in the driver: all of it).
        self._generation = in_process_generation(config.optimizer_model, base_url=self.opt.urls,
                                                 model=self.opt.model, cache_dir=cache, metrics=metrics_context,
                                                 role_name="optimizer", callers=config.cluster.num_refiners or 1)
        self._clients_open = True
        # Assigned before the thread begins: it reads `abandoned` from here.
        self._starting = StartingActors(lambda ray_up, stack: self._start_on_thread(ray_up, stack,
                                                                                     with_evaluators=not in_driver,
                                                                                     with_refiners=not generates_here))
        self._starting.begin()
        self.memory, self.refiners, self.evaluators = deferred_handles(
            self._starting, refiners=1 if generates_here else config.cluster.num_refiners or 1,
            evaluators=1 if in_driver else config.cluster.num_evaluators or 1, local=self._local,
            generation=self._generation)
        self.log.info("scoring_placed", in_driver=in_driver, evaluator_actors=0 if in_driver else len(self.evaluators),
                      generation_in_driver=generates_here, refiner_actors=0 if generates_here else len(self.refiners))
        self.progress = make_progress(self.output)

    def _start_on_thread(self, ray_up: Callable[[], None], ray_stack: contextlib.ExitStack, *,
                         with_evaluators: bool, with_refiners: bool) -> Actors:
        """The warm start's thread: the Ray session (entered here only, so never twice), the held metrics, then the
        actors - none once the run has stopped."""
        assert self._starting is not None and self.opt is not None and self.task is not None
        ray_stack.enter_context(ray_session(self.config.cluster.address, output=self.output))
        ray_up()
        with self._metrics_lock:
            self._ray_up = True
            held, self._held_metrics = self._held_metrics, []
        for deferred in (*held, self._local.metrics if self._local else None,
                         self._generation.metrics if self._generation else None):
            if deferred is not None:
                deferred.attach()
        if self._starting.abandoned.is_set():  # the run stopped while Ray started: no actors for it
            raise ActorsNotStarted("the run stopped before its actors were started")
        actors = start_actors(self.config, home=self.home, cache_dir=self.cache_dir, opt=self.opt, task=self.task,
                              embedder_factory=self.embedder_factory, with_evaluators=with_evaluators,
                              with_refiners=with_refiners,
                              tasks=self.tasks, judge=judge_endpoint(self.config, self.server))
        self._warm_started.extend(actors.all)
        if self.on_actors_started is not None:
            self.on_actors_started(actors)
        return actors.memory_router, actors.refiners, actors.evaluators

    async def _serving(self, main: Coroutine[Any, Any, T]) -> T:
        try:
            work = self._starting.supervise(main) if self._starting is not None else main
            return await (self.server.run_while_serving(work) if self.server is not None else work)
        finally:
            if self._clients_open:  # the warm start's in-process clients, in the loop they ran in
                self._clients_open = False
                assert self._local is not None and self._generation is not None
                await self._local.close()
                await self._generation.close()

    def _teardown(self) -> None:
        """Stop what the block started, last started first: the actors, Ray (when started here), the server."""
        import ray

        try:
            if self.progress is not None:
                self.progress.close()
            if self._starting is not None:
                started = self._starting.finish()  # from here on the driver may touch Ray: the start is over
                if self._local is not None:
                    log_handover(self._local, starting=self._starting, generation=self._generation)
                try:
                    if ray.is_initialized():  # none started when the run stopped first: logged as 0 stopped
                        kill_actors([] if started is None else self._warm_started)
                finally:
                    self._starting.close()  # Ray's shutdown, on the thread that started it
            elif self._actors is not None:
                kill_actors(self._actors.all)
        finally:
            self._stack.close()

