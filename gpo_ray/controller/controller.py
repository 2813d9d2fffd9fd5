"""The controller: runs one GPO loop per task concurrently over shared actors, checkpoints every step, reports
progress, and steers its two parts: the usage ledger (ledger.py: usage and the global budget) and the state writer
(state_writer.py: results.json and usage.json). The parts' names are importable from here as before."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from gpo_ray.config import RunConfig
from gpo_ray.controller.ledger import (
    UsageAcrossRestarts,
    UsageLedger,
    counts_went_down,
    current_levels,
    sum_usage,
)
from gpo_ray.controller.pools import EvaluatorPool, RefinerPool
from gpo_ray.controller.progress import ProgressReporter
from gpo_ray.controller.services import ActorServices, Evaluators, Refiners
from gpo_ray.controller.state_writer import (
    STATE_INTERVAL_S,
    ResultsDocument,
    RunClock,
    StateWriter,
    partial_task_result,
    read_state,
    utc_iso,
)
from gpo_ray.core.design import design_for
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.core.loop import GPOTaskLoop, schedule_for
from gpo_ray.core.results import StepResult, TaskResult
from gpo_ray.llm.concurrency import in_flight_share
from gpo_ray.observability.metrics import Metrics, metrics_for, run_metrics_context
from gpo_ray.observability.tracking import NullTracker, RunTracker
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.tasks.types import Task
from gpo_ray.vocabulary import RunStatus

# The names other modules, benchmarks and tests import from here, wherever they now live.
__all__ = [
    "STATE_INTERVAL_S", "Controller", "ResultsDocument", "RunClock", "SharedPools", "StateWriter",
    "UsageAcrossRestarts", "UsageLedger", "counts_went_down", "current_levels", "evaluator_pool", "partial_task_result", "sum_usage",
    "utc_iso",
]


def evaluator_pool(handles: Sequence[Any], config: RunConfig, *, metrics: Metrics,
                   route_by_content: bool = False) -> EvaluatorPool:
    """The evaluator pool of a run (or a sweep) with the run's cluster settings."""
    # Chunks of a quarter of an evaluator's in-flight limit (at least 4 items): one Ray call per chunk was most
    # of the driver's and evaluators' CPU per LLM call at high rates, and 4 chunks per evaluator keep it full.
    # Sized for the run (launch/cluster.py sized_for_run); unsized, each evaluator's share of the task model's cap.
    in_flight = config.cluster.evaluator_max_in_flight or in_flight_share(config.task_model.in_flight_cap,
                                                                          callers=len(handles))
    chunk = max(4, in_flight // 4)
    return EvaluatorPool(handles, metrics=metrics, chunk_size=chunk,
                         chunks_in_flight_per_actor=max(1, in_flight // chunk), route_by_content=route_by_content)


@dataclass(frozen=True)
class SharedPools:
    """What a sweep's sub-run uses of the sweep's shared actors: views of the pools naming its account, and the
    prefix of its tasks in the shared memory actor."""

    account: str
    refiners: Refiners
    evaluators: Evaluators
    memory_namespace: str


class Controller:
    def __init__(
        self,
        config: RunConfig,
        tasks: Sequence[Task],
        run_dir: RunDirectory,
        *,
        memory: Any,
        refiners: Sequence[Any],
        evaluators: Sequence[Any],
        progress: ProgressReporter,
        structured: bool,
        tracker: RunTracker | None = None,
        shared: SharedPools | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.config = config
        # A sweep's sub-run: the sweep's pools (views naming this sub-run's account) and its memory namespace.
        self.shared = shared
        self.tasks = list(tasks)
        self.run_dir = run_dir
        self.memory = memory
        self.refiner_handles = list(refiners)
        self.evaluator_handles = list(evaluators)
        self.progress = progress
        self.structured = structured
        self.fingerprint = config.fingerprint()
        self.total_steps = {t.name: schedule_for(t, config.optimizer).total_steps for t in self.tasks}
        self.records: dict[str, list[StepResult]] = {}
        self.log = structlog.get_logger()
        # A resumed run counts on from what the interrupted one spent (usage.json), for reports and the budget.
        self.ledger = UsageLedger(config, before=read_state(run_dir.usage_file), refiners=self.refiner_handles,
                                  evaluators=self.evaluator_handles,
                                  account=None if shared is None else shared.account, log=self.log)
        self.state = StateWriter(run_dir, config, self.ledger)
        # Made here, in the driver process, once Ray is up (or handed in: a warm start's, held until Ray is up);
        # a no-op when tracking.ray_metrics is off.
        self.metrics: Metrics = metrics or metrics_for(run_metrics_context(config, run_dir.path))
        self.tracker: RunTracker = tracker or NullTracker()
        self._step_started: dict[str, float] = {}

    # the ledger's answers, as callers (api, sweep, tests) ask the controller for them
    @property
    def usage(self) -> dict[str, Any]:
        return self.ledger.usage

    async def refresh_usage(self) -> dict[str, Any]:
        return await self.ledger.refresh()

    def total_calls(self) -> int:
        return self.ledger.total_calls()

    def budget_spent(self) -> bool:
        return self.ledger.budget_spent()

    async def _finish(self, status: RunStatus) -> None:
        """The last state write of this invocation, then the tracker's end (it reads results.json)."""
        await self.state.finish(status)
        await asyncio.to_thread(self.tracker.finish, status=status, results=self.state.results_document(status),
                                usage=self.ledger.usage, results_file=self.run_dir.results_file)

    def _record_step_metrics(self, task: str, record: StepResult, *, best: float) -> None:
        now = time.monotonic()
        if record.step > 0:
            self.metrics.inc("gpo_steps_completed_total", task=task)
            started = self._step_started.get(task)
            if started is not None:
                self.metrics.observe("gpo_step_latency_seconds", now - started, task=task)
        self._step_started[task] = now
        self.metrics.set("gpo_eval_score", record.eval_score, task=task)
        self.metrics.set("gpo_best_eval_score", best, task=task)
        self.metrics.set("gpo_edit_budget", record.edit_budget, task=task)

    async def _on_step(self, task: Task, record: StepResult) -> None:
        self.run_dir.append_step(task.name, record, fingerprint=self.fingerprint)
        recs = self.records.setdefault(task.name, [])
        recs.append(record)
        entry = self.state.task_entries[task.name] = partial_task_result(recs)
        best = entry["best_eval_score"]
        self._record_step_metrics(task.name, record, best=best)
        self.tracker.log_step(task.name, record, best_eval_score=best)
        await self.state.changed()
        if record.step > 0:
            self.progress.step_done(task.name, step=record.step, total_steps=self.total_steps[task.name],
                                    edit_budget=record.edit_budget, best_score=best, calls=self.total_calls())

    # the run ------------------------------------------------------------------------
    async def run(self) -> dict[str, TaskResult]:
        refiners: Refiners
        evaluators: Evaluators
        if self.shared is None:
            refiners = RefinerPool(self.refiner_handles, metrics=self.metrics)
            evaluators = evaluator_pool(self.evaluator_handles, self.config, metrics=self.metrics)
        else:
            refiners, evaluators = self.shared.refiners, self.shared.evaluators
        services = ActorServices(memory=self.memory, refiners=refiners, evaluators=evaluators,
                                 on_step=self._on_step, should_stop=self.ledger.budget_spent,
                                 run_dir=str(self.run_dir.path),
                                 retrieval=design_for(self.config.optimizer).step_retrieval,
                                 memory_namespace=self.shared.memory_namespace if self.shared else "",
                                 task_params=task_model_params(self.config))
        opt_role = self.config.optimizer_model
        stopped = True
        usage_keeper = asyncio.create_task(self.state.keep_usage_current())
        try:
            async def one(task: Task) -> TaskResult:
                done = self.run_dir.completed_steps(task.name, fingerprint=self.fingerprint)
                self.records[task.name] = list(done)
                if done:
                    self.state.task_entries[task.name] = partial_task_result(done)
                    await services.remember(task.name, done)
                self.progress.task_started(task.name, total_steps=self.total_steps[task.name],
                                           done_steps=max(0, len(done) - 1))
                self._step_started[task.name] = time.monotonic()
                if done:
                    self.metrics.set("gpo_best_eval_score", self.state.task_entries[task.name]["best_eval_score"],
                                     task=task.name)
                loop = GPOTaskLoop(task, settings=self.config.optimizer, services=services,
                                   structured=self.structured, optimizer_temperature=opt_role.temperature,
                                   optimizer_max_tokens=opt_role.max_tokens,
                                   max_metric_errors=self.config.budget.max_metric_errors)
                result = await loop.run(completed=done)
                await services.settle(task.name)  # the task's last memory write (a failed one stops the run)
                self.state.task_entries[task.name] = result.to_dict()
                await self.state.changed()
                return result

            results = await asyncio.gather(*(one(t) for t in self.tasks))
            stopped = False
        finally:
            usage_keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await usage_keeper
            await services.close()
            if isinstance(evaluators, EvaluatorPool):  # a sweep's shared pool is closed by the sweep
                await evaluators.close()
            with contextlib.suppress(Exception):  # usage is best effort when actors are gone
                await self.ledger.refresh()
            if stopped:  # results.json must not say "running" once the run has stopped on an error
                with contextlib.suppress(Exception):  # (the disk may be what stopped it)
                    await self._finish(RunStatus.STOPPED)
        out = {r.task: r for r in results}
        await self._finish(RunStatus.of_tasks(r.status for r in results))
        return out
