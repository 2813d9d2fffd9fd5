"""The loop's services over a stand-in memory (no Ray): a step's memory write is not awaited by the step, a task's
writes are stored in order, a retrieval that selects waits for them (and gets the one the last write carried), one
that does not is answered without the memory, and a failed write stops the run with its one line, never a hang."""

from __future__ import annotations

import asyncio

import pytest

from gpo_ray.controller.services import ActorServices, Retrieval
from gpo_ray.core.results import StepResult
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import RunFailed
from gpo_ray.tasks.types import Task


class Memory:
    """ShardedMemory's shape: each add waits for `gate`, then stores; add_and_retrieve answers with the rows' steps."""

    def __init__(self, *, fail_at_step: int | None = None) -> None:
        self.gate = asyncio.Event()
        self.stored: list[int] = []  # steps, in the order stored
        self.retrieved: list[str] = []
        self.fail_at_step = fail_at_step

    async def add(self, rows) -> None:
        await self.gate.wait()
        step = rows[0].step
        if step == self.fail_at_step:
            raise OSError(28, "No space left on device")
        self.stored.append(step)

    async def add_and_retrieve(self, task, rows, *, strategy, k, order):
        await self.add(rows)
        self.retrieved.append(f"with step {rows[0].step}")
        return [TrajectoryEntry("from memory", 0.5, rows[0].step)]

    async def retrieve(self, task, *, strategy, k, order):
        self.retrieved.append("alone")
        return [TrajectoryEntry("from memory", 0.5, -1)]


TASK = Task(name="t", train=(), eval=(), test=(), metric="exact_match")


def record(step: int) -> StepResult:
    return StepResult(step=step, edit_budget=10, prompt=f"prompt {step}", eval_score=0.1 * step)


def trajectory(steps: int) -> list[TrajectoryEntry]:
    return [TrajectoryEntry(f"prompt {t}", 0.1 * t, t) for t in range(steps)]


def services(memory: Memory, checkpointed: list[int], *, k: int = 3) -> ActorServices:
    async def on_step(task, r):
        checkpointed.append(r.step)

    return ActorServices(memory=memory, refiners=None, evaluators=None, on_step=on_step,  # type: ignore[arg-type]
                         should_stop=lambda: False, run_dir="/runs/x",
                         retrieval=Retrieval("relevance", k, "score_ascending"))


def test_steps_go_on_while_their_memory_writes_wait_and_a_selecting_retrieval_waits_for_them_in_order():
    async def scenario():
        memory, checkpointed = Memory(), []
        s = services(memory, checkpointed, k=2)
        await s.step_done(TASK, record(0))
        # Two entries, k=2: nothing to select; answered here while the memory has stored nothing.
        early = await s.retrieve(TASK, trajectory(1), strategy="relevance", k=2, order="score_ascending")
        await s.step_done(TASK, record(1))
        await s.step_done(TASK, record(2))
        assert checkpointed == [0, 1, 2] and memory.stored == [], "the steps did not wait for the memory"
        asked = asyncio.ensure_future(s.retrieve(TASK, trajectory(3), strategy="relevance", k=2,
                                                 order="score_ascending"))
        await asyncio.sleep(0.05)
        assert not asked.done(), "a retrieval that selects waits for the task's writes"
        memory.gate.set()
        late = await asked
        await s.settle("t")
        return early, late, memory

    early, late, memory = asyncio.run(asyncio.wait_for(scenario(), 10))  # the old awaited write: a hang
    assert early == trajectory(1)
    assert memory.stored == [0, 1, 2], "stored in step order"
    assert late == [TrajectoryEntry("from memory", 0.5, 2)] and memory.retrieved == ["with step 2"], (
        "the retrieval came with step 2's write: one round trip")


@pytest.mark.parametrize("noticed_by", ["next_step", "retrieval", "settle"])
def test_a_failed_memory_write_stops_the_run_with_its_one_line(noticed_by):
    async def scenario():
        memory, checkpointed = Memory(fail_at_step=0), []
        memory.gate.set()
        s = services(memory, checkpointed, k=1)
        await s.step_done(TASK, record(0))
        try:
            if noticed_by == "next_step":
                await asyncio.sleep(0.05)  # the write has failed by then
                await s.step_done(TASK, record(1))
            elif noticed_by == "retrieval":
                await s.retrieve(TASK, trajectory(2), strategy="relevance", k=1, order="score_ascending")
            else:
                await s.settle("t")
        finally:
            await s.close()

    with pytest.raises(RunFailed) as failed:
        asyncio.run(asyncio.wait_for(scenario(), 10))
    assert str(failed.value) == (
        "cannot store step 0 of t in the trajectory memory: [Errno 28] No space left on device; the step "
        "is checkpointed, `gpo-ray resume /runs/x` continues once that is fixed")
