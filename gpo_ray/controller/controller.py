"""The controller: runs one GPO loop per task concurrently over shared actors, checkpoints every step,
keeps results.json and usage.json current, enforces the global budget, reports progress."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import structlog

from gpo_ray.config import RunConfig, judge_metrics, sampling_settings
from gpo_ray.controller.pools import EvaluatorPool, RefinerPool
from gpo_ray.controller.progress import ProgressReporter
from gpo_ray.controller.services import ActorServices, Evaluators, Refiners, retrieval_of
from gpo_ray.core.evaluation import task_model_params
from gpo_ray.core.loop import GPOTaskLoop, schedule_for
from gpo_ray.core.results import StepResult, TaskResult
from gpo_ray.core.selection import select_best
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.observability.metrics import Metrics, metrics_for, run_metrics_context
from gpo_ray.observability.tracking import NullTracker, RunTracker
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.tasks.types import Task
from gpo_ray.vocabulary import Role, RunStatus

# results.json and usage.json are rewritten at most this often while a run goes (and always at its end).
STATE_INTERVAL_S = 1.0

def sum_usage(snapshots: Sequence[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for snap in snapshots:
        for k, v in snap.items():
            if isinstance(v, dict):
                inner = total.setdefault(k, {})
                for kk, vv in v.items():
                    inner[kk] = inner.get(kk, 0) + vv
            elif isinstance(v, (int, float)):
                total[k] = total.get(k, 0) + v
    return total


def counts_went_down(now: dict[str, Any], before: dict[str, Any]) -> bool:
    """Whether any count of `now` is below `before`'s: the counters are monotonic within one process."""
    return any(isinstance(v, (int, float)) and not isinstance(v, bool) and now.get(k, 0) < v
               for k, v in before.items())


class UsageAcrossRestarts:
    """Each actor's usage over all the processes Ray ran it in (see Controller.refresh_usage).

    Answers must come in the order they were asked: an actor's answer lower than the one before is read as a restart,
    so an older answer taken after a newer one would carry the newer one over twice (refresh_usage runs one at a
    time for this)."""

    def __init__(self, *, log: Any) -> None:
        self._log = log
        self._last_answer: dict[tuple[str, int], dict[str, Any]] = {}  # (role, actor index) -> its last usage()
        self._earlier: dict[tuple[str, int], dict[str, Any]] = {}  # the counts of its earlier processes

    def counts(self, role: str, answers: Sequence[Any]) -> list[dict[str, Any]]:
        """Per actor of `role` (its usage() answer, or the exception of one that did not answer): the counts of its
        earlier processes, then its last answer."""
        out: list[dict[str, Any]] = []
        for index, answer in enumerate(answers):
            key = (str(role), index)
            last = self._last_answer.get(key)
            if isinstance(answer, dict):
                if last is not None and counts_went_down(answer, last):
                    self._earlier[key] = sum_usage([self._earlier.get(key, {}), last])
                    self._log.info("usage_counter_reset", role=str(role), actor=index,
                                   carried_requests=last.get("requests", 0))
                self._last_answer[key] = last = answer
            out += [self._earlier.get(key, {}), last or {}]
        return out


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunClock:
    """Wall time of a run over all its invocations: a resume adds its own time to what results.json last said."""

    def __init__(self, previous: dict[str, Any] | None = None) -> None:
        previous = previous or {}
        now = datetime.now(timezone.utc)
        started = previous.get("started_at")
        self.started_at = started if isinstance(started, str) and started else utc_iso(now)
        before = previous.get("wall_time_s")
        self.wall_time_before = float(before) if isinstance(before, (int, float)) and before >= 0 else 0.0
        self._since = time.monotonic()

    def timing(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "updated_at": utc_iso(datetime.now(timezone.utc)),
                "wall_time_s": round(self.wall_time_before + time.monotonic() - self._since, 3)}


def partial_task_result(records: Sequence[StepResult]) -> dict[str, Any]:
    """A task's entry in results.json while it is still running (best so far; test scores only as traced)."""
    first = records[0]
    best = select_best([TrajectoryEntry(r.prompt, r.eval_score, r.step) for r in records])
    return {
        "initial_prompt": first.prompt,
        "initial_eval_score": first.eval_score,
        "initial_test_score": first.test_score,  # known while running with optimizer.trace_scores
        "best_prompt": best.prompt,
        "best_eval_score": best.score,
        "best_test_score": None,
        "best_step": best.step,
        "status": RunStatus.RUNNING,
        "steps": [r.to_dict() for r in records[1:]],
    }


def evaluator_pool(handles: Sequence[Any], config: RunConfig, *, metrics: Metrics,
                   route_by_content: bool = False) -> EvaluatorPool:
    """The evaluator pool of a run (or a sweep) with the run's cluster settings."""
    # Chunks of a quarter of an evaluator's in-flight limit (at least 4 items): one Ray call per chunk was most
    # of the driver's and evaluators' CPU per LLM call at high rates, and 4 chunks per evaluator keep it full.
    in_flight = config.cluster.evaluator_max_in_flight
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
        # A resumed run counts on from what the interrupted one spent (usage.json), for reports and the budget.
        self.usage_before = self._previous_usage()
        # The judge is a role of its own only in a run with a judge metric (usage.json keeps its two roles otherwise).
        self.roles = tuple(r for r in Role if r is not Role.JUDGE or judge_metrics(config))
        self.usage: dict[str, Any] = {role: dict(self.usage_before.get(role, {})) for role in self.roles}
        self.task_entries: dict[str, dict[str, Any]] = {}
        self.records: dict[str, list[StepResult]] = {}
        self.log = structlog.get_logger()
        self._across_restarts = UsageAcrossRestarts(log=self.log)
        # One usage refresh at a time (see refresh_usage): answers are then taken in the order they were asked.
        self._usage_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self.clock = RunClock(self._previous_results().get("timing"))
        # Made here, in the driver process, once Ray is up (or handed in: a warm start's, held until Ray is up);
        # a no-op when tracking.ray_metrics is off.
        self.metrics: Metrics = metrics or metrics_for(run_metrics_context(config, run_dir.path))
        self.tracker: RunTracker = tracker or NullTracker()
        self._step_started: dict[str, float] = {}
        self._last_state_write = -float("inf")
        self._pending_write: asyncio.Task[None] | None = None
        self._write_error: Exception | None = None
        self._final_status_written = False
        self._entry_text: dict[str, tuple[dict[str, Any], str]] = {}  # task -> (its entry, that entry serialised)

    # usage and budget ---------------------------------------------------------
    def _previous_usage(self) -> dict[str, Any]:
        return self._read_state(self.run_dir.usage_file)

    def _previous_results(self) -> dict[str, Any]:
        return self._read_state(self.run_dir.results_file)

    @staticmethod
    def _read_state(path: Any) -> dict[str, Any]:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    async def refresh_usage(self) -> dict[str, Any]:
        """This invocation's usage: what results.json held before it, plus every actor's counts.

        An actor's counters start at zero in each process: after Ray restarts a killed actor, its new counts alone
        would drop what the dead process had counted (budgets and usage.json undercounting). So each actor's last
        answer is kept: an actor that does not answer (being restarted) still counts what it last reported, and
        one whose counts went down was restarted, so its last answer is carried over and its new counts add to it
        (a counter reset, as Prometheus's rate() reads one). What a killed process counted after its last answer,
        at most STATE_INTERVAL_S of calls, is lost; the logs have each failed attempt.

        Refreshes run one at a time. Several callers refresh (the every-second keeper, the deferred state write, a
        budget's per-step check, the run's end); two at once could take their answers in the opposite order to
        the one they asked in, and an actor's older, lower answer taken after a newer one looked like a restart:
        the newer answer was carried over and counted twice (issue 23: usage.json said 39 optimizer calls where
        the endpoint and the exported metrics saw 36, and a run alone 21 where its sweep twin said 18)."""
        async with self._usage_lock:
            args = () if self.shared is None else (self.shared.account,)  # a sweep's sub-run: its account's usage
            opt = await asyncio.gather(*(h.usage.remote(*args) for h in self.refiner_handles),
                                       return_exceptions=True)
            task = await asyncio.gather(*(h.usage.remote(*args) for h in self.evaluator_handles),
                                        return_exceptions=True)
            judged: list[Any] = []
            if Role.JUDGE in self.roles:  # the judge is asked in the evaluators, counted there on its own
                judged = await asyncio.gather(*(h.judge_usage.remote(*args) for h in self.evaluator_handles),
                                              return_exceptions=True)
            before = self.usage_before
            answered = {Role.OPTIMIZER: opt, Role.TASK_MODEL: task, Role.JUDGE: judged}
            self.usage = {
                role: sum_usage([before.get(role, {}), *self._across_restarts.counts(role, answered[role])])
                for role in self.roles
            }
            return self.usage

    def total_calls(self) -> int:
        return sum(int(u.get("requests", 0)) for u in self.usage.values())

    def total_tokens(self) -> int:
        return sum(int(u.get("prompt_tokens", 0)) + int(u.get("completion_tokens", 0)) for u in self.usage.values())

    def budget_spent(self) -> bool:
        b = self.config.budget
        return bool((b.max_calls and self.total_calls() >= b.max_calls)
                    or (b.max_tokens and self.total_tokens() >= b.max_tokens))

    # persistence ----------------------------------------------------------------
    def results_document(self, status: RunStatus) -> dict[str, Any]:
        return {"status": status, "run_dir": str(self.run_dir.path), "sampling": sampling_settings(self.config),
                "tasks": dict(self.task_entries), "usage": self.usage, "timing": self.clock.timing()}

    def results_text(self, status: RunStatus) -> str:
        """results_document as `json.dumps(..., indent=2, ensure_ascii=False)` writes it, with each task's entry
        serialised only when it changed: at a thousand tasks, serialising every entry at every rewrite was most
        of the driver's CPU (benchmarks/README.md)."""
        def value(v: Any, depth: int) -> str:
            return json.dumps(v, indent=2, ensure_ascii=False).replace("\n", "\n" + "  " * depth)

        tasks = []
        for name, entry in self.task_entries.items():
            cached = self._entry_text.get(name)
            if cached is None or cached[0] is not entry:  # entries are replaced, never changed in place
                cached = self._entry_text[name] = (entry, value(entry, 2))
            tasks.append(f"    {json.dumps(name, ensure_ascii=False)}: {cached[1]}")
        doc = self.results_document(status)
        head = [f"  {json.dumps(k)}: {value(doc[k], 1)}" for k in ("status", "run_dir", "sampling")]
        tail = [f"  {json.dumps(k)}: {value(doc[k], 1)}" for k in ("usage", "timing")]
        body = "{\n" + ",\n".join(tasks) + "\n  }" if tasks else "{}"
        return "{\n" + ",\n".join([*head, f'  "tasks": {body}', *tail]) + "\n}"

    async def _write_state(self, status: RunStatus = RunStatus.RUNNING) -> None:
        async with self._write_lock:
            # A deferred write that was refreshing usage when the run finished must not say "running" again.
            if status == RunStatus.RUNNING and self._final_status_written:
                return
            self._final_status_written = status != RunStatus.RUNNING
            self.run_dir.write_results(self.results_text(status))
            self.run_dir.write_usage(self.usage)

    async def _state_changed(self) -> None:
        """Refresh usage and rewrite results.json/usage.json, at most every STATE_INTERVAL_S.

        The fsynced checkpoints are the truth and are written at every step; the two state files are views of
        them that grow with the run, and rewriting them at every step of many tasks cost more driver CPU than
        everything else it does. With a budget, usage is refreshed every step, so the budget stops on time.
        """
        if self._write_error is not None:  # a deferred write failed (a full disk): stop as a direct write would
            raise self._write_error
        if self._budget_set():
            await self.refresh_usage()
        wait = self._last_state_write + STATE_INTERVAL_S - time.monotonic()
        if wait <= 0:
            await self._write_current_state()
        elif self._pending_write is None:
            self._pending_write = asyncio.create_task(self._write_later(wait))

    async def _write_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pending_write = None
        try:
            await self._write_current_state()
        except Exception as e:  # noqa: BLE001 - handed to the next step, which stops the run with it
            self._write_error = e

    async def _write_current_state(self) -> None:
        self._last_state_write = time.monotonic()
        if not self._budget_set():
            await self.refresh_usage()
        await self._write_state()

    async def _keep_usage_current(self) -> None:
        """usage.json rewritten every STATE_INTERVAL_S while the run goes, steps or not. Failed attempts come in
        stretches without steps (a call retried through a burst of 429s, stalls cut by the read timeout); written
        only at steps, a driver killed then lost them all. Never written lower than before: an actor being
        restarted does not answer `usage()` and would take its counts out of the sum."""
        def requests(usage: dict[str, Any]) -> dict[str, int]:
            return {role: int(u.get("requests", 0)) for role, u in usage.items()}

        written = requests(self.usage)
        while True:
            await asyncio.sleep(STATE_INTERVAL_S)
            now = requests(await self.refresh_usage())
            if now != written and all(now.get(role, 0) >= n for role, n in written.items()):
                async with self._write_lock:
                    if self._final_status_written:
                        return
                    self.run_dir.write_usage(self.usage)
                written = now

    def _budget_set(self) -> bool:
        return bool(self.config.budget.max_calls or self.config.budget.max_tokens)

    async def _cancel_pending_write(self) -> None:
        pending, self._pending_write = self._pending_write, None
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending

    async def _finish(self, status: RunStatus) -> None:
        """The last state write of this invocation, then the tracker's end (it reads results.json)."""
        await self._cancel_pending_write()
        await self._write_state(status)
        await asyncio.to_thread(self.tracker.finish, status=status, results=self.results_document(status),
                                usage=self.usage, results_file=self.run_dir.results_file)

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
        self.task_entries[task.name] = partial_task_result(recs)
        best = self.task_entries[task.name]["best_eval_score"]
        self._record_step_metrics(task.name, record, best=best)
        self.tracker.log_step(task.name, record, best_eval_score=best)
        await self._state_changed()
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
                                 on_step=self._on_step, should_stop=self.budget_spent,
                                 run_dir=str(self.run_dir.path), retrieval=retrieval_of(self.config.optimizer),
                                 memory_namespace=self.shared.memory_namespace if self.shared else "",
                                 task_params=task_model_params(self.config))
        opt_role = self.config.optimizer_model
        stopped = True
        usage_keeper = asyncio.create_task(self._keep_usage_current())
        try:
            async def one(task: Task) -> TaskResult:
                done = self.run_dir.completed_steps(task.name, fingerprint=self.fingerprint)
                self.records[task.name] = list(done)
                if done:
                    self.task_entries[task.name] = partial_task_result(done)
                    await services.remember(task.name, done)
                self.progress.task_started(task.name, total_steps=self.total_steps[task.name],
                                           done_steps=max(0, len(done) - 1))
                self._step_started[task.name] = time.monotonic()
                if done:
                    self.metrics.set("gpo_best_eval_score", self.task_entries[task.name]["best_eval_score"],
                                     task=task.name)
                loop = GPOTaskLoop(task, settings=self.config.optimizer, services=services,
                                   structured=self.structured, optimizer_temperature=opt_role.temperature,
                                   optimizer_max_tokens=opt_role.max_tokens,
                                   max_metric_errors=self.config.budget.max_metric_errors)
                result = await loop.run(completed=done)
                await services.settle(task.name)  # the task's last memory write (a failed one stops the run)
                self.task_entries[task.name] = result.to_dict()
                await self._state_changed()
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
            try:
                await self.refresh_usage()
            except Exception:  # noqa: BLE001 - usage is best effort when actors are gone
                pass
            if stopped:  # results.json must not say "running" once the run has stopped on an error
                with contextlib.suppress(Exception):  # (the disk may be what stopped it)
                    await self._finish(RunStatus.STOPPED)
        out = {r.task: r for r in results}
        await self._finish(RunStatus.of_tasks(r.status for r in results))
        return out
