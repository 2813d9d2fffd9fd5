"""A run's first calls begin in the driver while Ray and the actors come up (issue 16: first call within 3 s).

Starting a local Ray cluster and the run's worker processes takes seconds (2.4 s unloaded on 2 cores, 15 s and more
under load), yet the first thing a GPO loop does is score the initial prompt on the eval split: task-model calls
only. So `StartingActors` runs Ray's start and the actors' creation on a thread, and the controller begins at once
with stand-ins for the actor handles (`deferred_handles`):
- an evaluator stand-in scores in this process (`Evaluator`, the actor's own class: the same `score_example`, client
  stack, response cache directory, task-model parameters and in-flight bound) until the actors are ready, then
  hands each further chunk to its actor; items this process already scored are answered from here, as one
  evaluator's score cache would answer them;
- a refiner stand-in likewise generates in this process (`Refiner`, the actor's own class) until the actors are
  ready, then hands each further request to its actor;
- the memory stand-in waits for its actors; the loop's first calls do not need it: memory writes are not awaited
  and a retrieval that does not select is answered in the driver (controller/services.py), so a task runs its
  first retrieval_k steps (2 with relevance as_selected) before any actor exists.
A small run on one machine has no evaluator actor at all (runtime/local_cluster.py `scores_in_driver`): its
evaluator stand-in keeps scoring in the driver; with its refiner count unset, no refiner actor either
(`generates_in_driver`), and its refiner stand-in keeps asking from the driver.
Usage: the first evaluator (refiner) stand-in adds the in-process client's counters to its actor's `usage()`, so
usage.json and the budget count every call; the in-process gpo_llm_* counts are held until Ray is up
(`DeferredMetrics`) and then exported, so the metrics still equal usage.json.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import threading
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, TypeVar

import structlog

from gpo_ray.actors.evaluator import Evaluator, ScoreItem
from gpo_ray.actors.refiner import Refiner
from gpo_ray.llm.stack import close_client
from gpo_ray.observability.metrics import LLMUsageMetrics, Metrics, MetricsContext, metrics_for
from gpo_ray.runtime.signals import in_main_thread

T = TypeVar("T")

# (memory, refiners, evaluators): the actor handles of a run.
Actors = tuple[Any, list[Any], list[Any]]


class ActorsNotStarted(RuntimeError):
    """Raised to a caller that waited for actors whose start was abandoned (the run stopped first)."""


class StartingActors:
    """Ray's start and the run's actors, on a thread of their own; awaited by whatever needs an actor.

    `start(ray_up, stack)` does the work and returns the handles, entering what must be closed at the end (the Ray
    session) into `stack`; it calls `ray_up()` once `ray.init` has returned, so that the main thread puts back its
    SIGTERM handler at once (ray.init, on any thread, installs a C++ handler that dumps a stack; Python lets only
    the main thread set handlers). `abandoned` tells `start` to stop before creating actors when the run already
    stopped.

    The thread lives until `close()`, and closes `stack` itself: the Ray daemons it started (GCS, raylet) are
    killed by Linux when the *thread* that started them ends (Ray sets PR_SET_PDEATHSIG, which follows the parent
    thread, not the process)."""

    def __init__(self, start: Callable[[Callable[[], None], contextlib.ExitStack], Actors]) -> None:
        self._start = start
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._release = threading.Event()
        self.abandoned = threading.Event()
        self.actors: Actors | None = None
        self.error: BaseException | None = None
        self.close_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready: asyncio.Event | None = None
        self._sigterm = signal.getsignal(signal.SIGTERM) if in_main_thread() else None
        self._thread = threading.Thread(target=self._run, name="gpo-ray-start", daemon=True)

    def begin(self) -> StartingActors:
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            with contextlib.ExitStack() as stack:
                try:
                    self.actors = self._start(self._ray_up, stack)
                except BaseException as e:  # noqa: BLE001 - handed to the run, which stops with it
                    self.error = e
                finally:
                    self._started()
                self._release.wait()
        except BaseException as e:  # noqa: BLE001 - Ray's shutdown failed: told by close()
            self.close_error = e

    def _started(self) -> None:
        with self._lock:
            self._done.set()
            loop, ready = self._loop, self._ready
        if loop is not None and ready is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
                loop.call_soon_threadsafe(ready.set)

    def _ray_up(self) -> None:
        with self._lock:
            loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self.restore_sigterm_handler)

    def restore_sigterm_handler(self) -> None:
        """Put back the SIGTERM handler the main thread had before Ray's start (main thread only)."""
        if self._sigterm is not None and in_main_thread():
            signal.signal(signal.SIGTERM, self._sigterm)

    @property
    def is_ready(self) -> bool:
        return self._done.is_set() and self.actors is not None

    def in_driver(self, role: int) -> bool:
        """Whether calls of `role` (1: refiners, 2: evaluators) go to the driver's in-process client: until the actors
        are ready, and for good when the run started none of that role."""
        return not self.is_ready or not self.actors[role]  # type: ignore[index]

    async def ready(self) -> Actors:
        """The actor handles, once started; raises the start's error."""
        with self._lock:
            if self._ready is None:
                self._loop, self._ready = asyncio.get_running_loop(), asyncio.Event()
                if self._done.is_set():
                    self._ready.set()
            ready = self._ready
        await ready.wait()
        if self.error is not None:
            raise self.error
        if self.actors is None:
            raise ActorsNotStarted("the run's actors were not started")
        return self.actors

    async def supervise(self, main: Coroutine[Any, Any, T]) -> T:
        """Run `main` (the controller) in this loop; if the start fails, stop it and raise the start's error (also
        when `main` stopped first on it, e.g. wrapped by a stand-in's caller): the run's one line is Ray's."""
        run = asyncio.ensure_future(main)
        watch = asyncio.ensure_future(self.ready())
        try:
            await asyncio.wait({run, watch}, return_when=asyncio.FIRST_COMPLETED)
            if not run.done():
                if self.error is None:
                    self.restore_sigterm_handler()
                    return await run
                run.cancel()
                with contextlib.suppress(BaseException):
                    await run
                raise self.error
            if run.exception() is not None and self.error is not None:
                raise self.error from None
            return run.result()
        finally:
            for t in (run, watch):  # a Ctrl-C cancels this task: the controller's own `finally` still runs
                if not t.done():
                    t.cancel()
                with contextlib.suppress(BaseException):  # (and an error already raised is not reported again)
                    await t

    def finish(self) -> Actors | None:
        """Wait for the start to end (it stops before creating actors once abandoned); the handles, if any."""
        self.abandoned.set()
        self._done.wait()
        self.restore_sigterm_handler()
        return self.actors

    def close(self) -> None:
        """Let the thread close what the start opened (Ray's shutdown) and end; raises what that raised."""
        self.abandoned.set()
        self._release.set()
        self._thread.join()
        self.restore_sigterm_handler()
        if self.close_error is not None:
            raise self.close_error


class _DeferredMethod:
    def __init__(self, call: Callable[..., Coroutine[Any, Any, Any]]) -> None:
        self._call = call

    def remote(self, *args: Any, **kwargs: Any) -> Coroutine[Any, Any, Any]:
        return self._call(*args, **kwargs)


class DeferredHandle:
    """An actor handle's stand-in: `handle.method.remote(...)` waits for the actor, then calls it."""

    def __init__(self, starting: StartingActors, pick: Callable[[Actors], Any]) -> None:
        self._starting = starting
        self._pick = pick

    async def _actor(self) -> Any:
        return self._pick(await self._starting.ready())

    def __getattr__(self, method: str) -> _DeferredMethod:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            if method == "usage" and not self._starting.is_ready:
                return {}  # an actor not started yet has made no call (and a stopping run need not wait for it)
            return await getattr(await self._actor(), method).remote(*args, **kwargs)

        return _DeferredMethod(call)


class DeferredMemory:
    """The trajectory memory's stand-in (a ShardedMemory, whose methods are coroutines): each call waits for the
    memory actors, then is made."""

    def __init__(self, starting: StartingActors) -> None:
        self._starting = starting

    def __getattr__(self, method: str) -> Callable[..., Coroutine[Any, Any, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await getattr((await self._starting.ready())[0], method)(*args, **kwargs)

        return call


class InProcessScoring:
    """The evaluator the driver scores with until the actors are ready: the actor's class, run in this process."""

    def __init__(self, evaluator: Evaluator, *, metrics: DeferredMetrics | None = None) -> None:
        self.evaluator = evaluator
        self.metrics = metrics
        self.items_scored = 0

    async def run(self, method: str, chunk: list[ScoreItem], *args: Any) -> list[Any]:
        self.items_scored += len(chunk)
        return await getattr(self.evaluator, method)(chunk, *args)

    def known(self, item: ScoreItem, params: Any, account: str | None) -> tuple[bool, float]:
        key = (account, params or self.evaluator.params, *item.key)
        scores = self.evaluator.scores
        return (True, scores[key]) if key in scores else (False, 0.0)

    def usage(self, account: str | None) -> dict[str, Any]:
        return self.evaluator.counters.snapshot_of(account)

    async def close(self) -> None:
        await close_client(self.evaluator.llm)


class EvaluatorStandIn(DeferredHandle):
    """An evaluator handle's stand-in: scoring goes to `local` until the actors are ready, then to the actor."""

    def __init__(self, starting: StartingActors, index: int, local: InProcessScoring, *, counts_local: bool) -> None:
        super().__init__(starting, lambda actors: actors[2][index])
        self._local = local
        self._counts_local = counts_local  # one stand-in reports the in-process usage, so it is counted once

    def _scores_here(self) -> bool:
        return self._starting.in_driver(2)

    def __getattr__(self, method: str) -> _DeferredMethod:
        if method == "score":
            return _DeferredMethod(self._score)
        if method == "score_with_predictions":
            return _DeferredMethod(self._with_predictions)
        if method == "usage":
            return _DeferredMethod(self._usage)
        return super().__getattr__(method)

    async def _score(self, chunk: list[ScoreItem], *args: Any) -> list[float]:
        if self._scores_here():
            return await self._local.run("score", chunk, *args)
        params = args[0] if args else None
        account = args[1] if len(args) > 1 else None
        known = [self._local.known(item, params, account) for item in chunk]
        todo = [item for item, (hit, _) in zip(chunk, known, strict=True) if not hit]
        fresh = iter(await (await self._actor()).score.remote(todo, *args) if todo else [])
        return [value if hit else next(fresh) for hit, value in known]

    async def _with_predictions(self, chunk: list[ScoreItem], *args: Any) -> list[tuple[float, str]]:
        if self._scores_here():
            return await self._local.run("score_with_predictions", chunk, *args)
        return await (await self._actor()).score_with_predictions.remote(chunk, *args)

    async def _usage(self, account: str | None = None) -> dict[str, Any]:
        from gpo_ray.controller.controller import current_levels, sum_usage

        parts = [self._local.usage(account)] if self._counts_local else []
        if not self._scores_here():
            parts.append(await (await self._actor()).usage.remote(*(() if account is None else (account,))))
        return sum_usage(parts) | current_levels(parts[-1:])  # the levels of whichever sends now


class InProcessGeneration:
    """The refiner the driver generates with until the actors are ready: the actor's class, run in this process."""

    def __init__(self, refiner: Refiner, *, metrics: DeferredMetrics | None = None) -> None:
        self.refiner = refiner
        self.metrics = metrics
        self.requests = 0

    async def run(self, method: str, *args: Any) -> Any:
        self.requests += 1
        return await getattr(self.refiner, method)(*args)

    def usage(self, account: str | None) -> dict[str, Any]:
        return self.refiner.counters.snapshot_of(account)

    async def close(self) -> None:
        await close_client(self.refiner.llm)


class RefinerStandIn(DeferredHandle):
    """A refiner handle's stand-in: generation goes to `local` until the actors are ready, then to the actor."""

    def __init__(self, starting: StartingActors, index: int, local: InProcessGeneration, *,
                 counts_local: bool) -> None:
        super().__init__(starting, lambda actors: actors[1][index])
        self._local = local
        self._counts_local = counts_local  # one stand-in reports the in-process usage, so it is counted once

    def __getattr__(self, method: str) -> _DeferredMethod:
        if method in ("generate", "ask"):
            return _DeferredMethod(functools.partial(self._call, method))
        if method == "usage":
            return _DeferredMethod(self._usage)
        return super().__getattr__(method)

    def _generates_here(self) -> bool:
        return self._starting.in_driver(1)

    async def _call(self, method: str, *args: Any) -> Any:
        if self._generates_here():
            return await self._local.run(method, *args)
        return await getattr(await self._actor(), method).remote(*args)

    async def _usage(self, account: str | None = None) -> dict[str, Any]:
        from gpo_ray.controller.controller import current_levels, sum_usage

        parts = [self._local.usage(account)] if self._counts_local else []
        if not self._generates_here():
            parts.append(await (await self._actor()).usage.remote(*(() if account is None else (account,))))
        return sum_usage(parts) | current_levels(parts[-1:])  # the levels of whichever sends now


def deferred_handles(starting: StartingActors, *, refiners: int, evaluators: int, local: InProcessScoring,
                     generation: InProcessGeneration | None = None) -> Actors:
    """Stand-ins for the run's (memory, refiners, evaluators), usable before the actors exist; without
    `generation`, the refiner stand-ins wait for their actors."""
    return (DeferredMemory(starting),
            [DeferredHandle(starting, lambda a, i=i: a[1][i]) if generation is None
             else RefinerStandIn(starting, i, generation, counts_local=i == 0) for i in range(refiners)],
            [EvaluatorStandIn(starting, i, local, counts_local=i == 0) for i in range(evaluators)])


class DeferredMetrics:
    """A `Metrics` that holds what it is told until Ray is up (`attach`), then passes it all on and forwards the rest.
    Ray's metrics can be made only in a process that is part of a cluster."""

    def __init__(self, context: MetricsContext | None, **tags: str) -> None:
        self._context = context
        self._tags = tags
        self._held: list[tuple[str, str, float, dict[str, str]]] = []
        self._target: Metrics | None = None
        self._lock = threading.Lock()

    def attach(self) -> None:
        target = metrics_for(self._context, **self._tags)
        with self._lock:  # in order: a gauge set meanwhile must not be overwritten by an older held value
            for method, name, value, tags in self._held:
                getattr(target, method)(name, value, **tags)
            self._held, self._target = [], target

    def _record(self, method: str, name: str, value: float, tags: dict[str, str]) -> None:
        with self._lock:
            target = self._target
            if target is None:
                self._held.append((method, name, value, tags))
                return
        getattr(target, method)(name, value, **tags)

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        self._record("inc", name, value, tags)

    def set(self, name: str, value: float, **tags: str) -> None:
        self._record("set", name, value, tags)

    def observe(self, name: str, value: float, **tags: str) -> None:
        self._record("observe", name, value, tags)


def in_process_scoring(role: Any, *, base_url: str | Sequence[str], model: str, cache_dir: str | None, params: Any,
                       max_in_flight: int, metrics: MetricsContext | None, role_name: str,
                       callers: int = 1) -> InProcessScoring:
    """The driver's evaluator: the actor's class with the actor's arguments (`callers`: the evaluators whose share of
    the cap it takes); its gpo_llm_* counts held until Ray is up when metrics are on."""
    evaluator = Evaluator(role, base_url=list(base_url) if not isinstance(base_url, str) else base_url, model=model,
                          cache_dir=cache_dir, params=params, max_in_flight=max_in_flight, metrics=None,
                          callers=callers)
    deferred = None
    if metrics is not None and metrics.enabled:
        deferred = DeferredMetrics(metrics, role=role_name)
        evaluator.counters.attach(LLMUsageMetrics(deferred))
    return InProcessScoring(evaluator, metrics=deferred)


def in_process_generation(role: Any, *, base_url: str | Sequence[str], model: str, cache_dir: str | None,
                          metrics: MetricsContext | None, role_name: str, callers: int = 1) -> InProcessGeneration:
    """The driver's refiner: the actor's class with the actor's arguments (`callers`: the refiners whose share of the
    cap it takes); its gpo_llm_* counts held until Ray is up when metrics are on."""
    refiner = Refiner(role, base_url=list(base_url) if not isinstance(base_url, str) else base_url, model=model,
                      cache_dir=cache_dir, metrics=None, callers=callers)
    deferred = None
    if metrics is not None and metrics.enabled:
        deferred = DeferredMetrics(metrics, role=role_name)
        refiner.counters.attach(LLMUsageMetrics(deferred))
    return InProcessGeneration(refiner, metrics=deferred)


def log_handover(local: InProcessScoring, *, starting: StartingActors,
                 generation: InProcessGeneration | None = None) -> None:
    structlog.get_logger().info("warm_start_done", in_process_items=local.items_scored,
                                in_process_generations=generation.requests if generation is not None else 0,
                                actors_started=starting.is_ready)
