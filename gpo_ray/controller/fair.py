"""Fair dispatch of work items from many tasks onto a fixed set of worker slots.

Each task has its own queue; free slots take the next item round-robin across tasks that are waiting,
so a task that submits a thousand items cannot starve one that submits ten. Backpressure is the fixed
number of slots: nothing is sent to a worker beyond them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class FairScheduler(Generic[Item, Result]):
    def __init__(self, workers: Sequence[Callable[[Item], Awaitable[Result]]], *, slots_per_worker: int = 1) -> None:
        if not workers:
            raise ValueError("FairScheduler needs at least one worker")
        self._workers = list(workers)
        self._slots_per_worker = slots_per_worker
        self._queues: OrderedDict[str, deque[tuple[Item, asyncio.Future[Result]]]] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._runners: list[asyncio.Task[Any]] = []
        self.dispatch_order: list[str] = []  # task keys in the order items were handed out (for tests/metrics)

    def start(self) -> None:
        if not self._runners:
            self._runners = [
                asyncio.ensure_future(self._run(worker))
                for worker in self._workers
                for _ in range(self._slots_per_worker)
            ]

    async def close(self) -> None:
        for r in self._runners:
            r.cancel()
        await asyncio.gather(*self._runners, return_exceptions=True)
        self._runners = []

    def submit(self, key: str, item: Item) -> asyncio.Future[Result]:
        self.start()
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(key, deque()).append((item, fut))
        self._wakeup.set()
        return fut

    def _next(self) -> tuple[Item, asyncio.Future[Result]] | None:
        while self._queues:
            key, queue = next(iter(self._queues.items()))
            self._queues.move_to_end(key)  # round robin: this task goes to the back of the line
            if queue:
                item = queue.popleft()
                if not queue:
                    del self._queues[key]
                self.dispatch_order.append(key)
                return item
            del self._queues[key]
        return None

    async def _run(self, worker: Callable[[Item], Awaitable[Result]]) -> None:
        while True:
            nxt = self._next()
            if nxt is None:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            item, fut = nxt
            if fut.cancelled():
                continue
            try:
                result = await worker(item)
            except asyncio.CancelledError:
                if not fut.done():
                    fut.cancel()
                raise
            except BaseException as e:  # noqa: BLE001 - handed to the submitter
                if not fut.done():
                    fut.set_exception(e)
            else:
                if not fut.done():
                    fut.set_result(result)
