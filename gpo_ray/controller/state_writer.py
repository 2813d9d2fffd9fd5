"""The state files of a run: results.json (every task's best so far, the usage, the run's wall time) and usage.json,
rewritten at most every STATE_INTERVAL_S while the run goes and always at its end.

The fsynced checkpoints are the truth and are written at every step; the two state files are views of them that
grow with the run. results.json is serialised from a pydantic model (`ResultsDocument`) by pydantic-core: at a
thousand tasks that is about 4 times faster than `json.dumps` and faster than re-serialising only the tasks that
changed, which the controller did by hand before (benchmarks/README.md, "results.json at 1,000 tasks")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from gpo_ray.config import RunConfig, sampling_settings
from gpo_ray.controller.ledger import UsageLedger
from gpo_ray.core.results import StepResult
from gpo_ray.core.selection import select_best
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import RunStatus

# results.json and usage.json are rewritten at most this often while a run goes (and always at its end).
STATE_INTERVAL_S = 1.0


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class RunClock:
    """Wall time of a run over all its invocations: a resume adds its own time to what results.json last said."""

    def __init__(self, previous: dict[str, Any] | None = None) -> None:
        previous = previous or {}
        now = datetime.now(UTC)
        started = previous.get("started_at")
        self.started_at = started if isinstance(started, str) and started else utc_iso(now)
        before = previous.get("wall_time_s")
        self.wall_time_before = float(before) if isinstance(before, (int, float)) and before >= 0 else 0.0
        self._since = time.monotonic()

    def timing(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "updated_at": utc_iso(datetime.now(UTC)),
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


class ResultsDocument(BaseModel):
    """results.json. A task's entry is `TaskResult.to_dict()` (`partial_task_result` while it runs)."""

    # NaN and infinities as json.dumps writes them (a metric's NaN score must not turn into null).
    model_config = ConfigDict(ser_json_inf_nan="constants")

    status: RunStatus
    run_dir: str
    sampling: dict[str, Any]
    tasks: dict[str, dict[str, Any]]
    usage: dict[str, Any]
    timing: dict[str, Any]

    def text(self) -> str:
        """The file's text: what `json.dumps(document, indent=2, ensure_ascii=False)` writes, byte for byte, but for
        floats below 1e-4, which read back equal (`9.5e-05` is written `0.000095`)."""
        return self.model_dump_json(indent=2)


def read_state(path: Path) -> dict[str, Any]:
    """A state file as the last invocation left it ({} when missing or unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class StateWriter:
    """Keeps results.json and usage.json current: each task's entry (`task_entries`), the ledger's usage, the clock.

    Writes are debounced (`changed` at every step, a write at most every STATE_INTERVAL_S, a deferred one for the
    steps in between); the last write of an invocation says how it ended, and nothing says "running" after it."""

    def __init__(self, run_dir: RunDirectory, config: RunConfig, ledger: UsageLedger) -> None:
        self.run_dir = run_dir
        self.config = config
        self.ledger = ledger
        self.task_entries: dict[str, dict[str, Any]] = {}
        self.clock = RunClock(read_state(run_dir.results_file).get("timing"))
        self._lock = asyncio.Lock()
        self._last_write = -float("inf")
        self._pending: asyncio.Task[None] | None = None
        self._error: Exception | None = None
        self._final_status_written = False

    def results_document(self, status: RunStatus) -> dict[str, Any]:
        return {"status": status, "run_dir": str(self.run_dir.path), "sampling": sampling_settings(self.config),
                "tasks": dict(self.task_entries), "usage": self.ledger.usage, "timing": self.clock.timing()}

    def results_text(self, status: RunStatus) -> str:
        return ResultsDocument.model_validate(self.results_document(status)).text()

    async def write(self, status: RunStatus = RunStatus.RUNNING) -> None:
        async with self._lock:
            # A deferred write that was refreshing usage when the run finished must not say "running" again.
            if status == RunStatus.RUNNING and self._final_status_written:
                return
            self._final_status_written = status != RunStatus.RUNNING
            self.run_dir.write_results(self.results_text(status))
            self.run_dir.write_usage(self.ledger.usage)

    async def changed(self) -> None:
        """Refresh usage and rewrite results.json/usage.json, at most every STATE_INTERVAL_S.

        Rewriting the state files at every step of many tasks cost more driver CPU than everything else the driver
        does. With a budget, usage is refreshed every step, so the budget stops on time."""
        if self._error is not None:  # a deferred write failed (a full disk): stop as a direct write would
            raise self._error
        if self.ledger.budget_set():
            await self.ledger.refresh()
        wait = self._last_write + STATE_INTERVAL_S - time.monotonic()
        if wait <= 0:
            await self._write_current()
        elif self._pending is None:
            self._pending = asyncio.create_task(self._write_later(wait))

    async def _write_later(self, delay: float) -> None:
        await asyncio.sleep(delay)
        self._pending = None
        try:
            await self._write_current()
        except Exception as e:  # noqa: BLE001 - handed to the next step, which stops the run with it
            self._error = e

    async def _write_current(self) -> None:
        self._last_write = time.monotonic()
        if not self.ledger.budget_set():
            await self.ledger.refresh()
        await self.write()

    async def keep_usage_current(self) -> None:
        """usage.json rewritten every STATE_INTERVAL_S while the run goes, steps or not. Failed attempts come in
        stretches without steps (a call retried through a burst of 429s, stalls cut by the read timeout); written
        only at steps, a driver killed then lost them all. Never written lower than before: an actor being
        restarted does not answer `usage()` and would take its counts out of the sum."""
        def requests(usage: dict[str, Any]) -> dict[str, int]:
            return {role: int(u.get("requests", 0)) for role, u in usage.items()}

        written = requests(self.ledger.usage)
        while True:
            await asyncio.sleep(STATE_INTERVAL_S)
            now = requests(await self.ledger.refresh())
            if now != written and all(now.get(role, 0) >= n for role, n in written.items()):
                async with self._lock:
                    if self._final_status_written:
                        return
                    self.run_dir.write_usage(self.ledger.usage)
                written = now

    async def cancel_pending(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pending

    async def finish(self, status: RunStatus) -> None:
        """The last state write of this invocation."""
        await self.cancel_pending()
        await self.write(status)
