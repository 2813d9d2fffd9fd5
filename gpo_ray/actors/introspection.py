"""What the driver asks every actor: where it runs (placement checks, fault tests) and to stop; and the line each
actor logs as it starts, which says when Ray restarted it."""

from __future__ import annotations

import asyncio
import os

import ray
import structlog


class WhereAmI:
    """Mixin for actor classes: the Ray node and the worker process they live in, and a quiet stop."""

    restarted = False

    def announce_start(self, actor: str) -> None:
        """Log `actor_started`, a warning with restarted=True when Ray restarted this actor after its process died
        (killed, crashed, its node lost). Ray then retries the calls it had, so the driver sees nothing: this line
        in the actor's log (Ray's worker logs, `ray logs`) is what shows the loss. The class run in the driver (a
        warm start's scoring, controller/warm_start.py) is no actor: it logs nothing."""
        if not ray.is_initialized() or ray.get_runtime_context().worker.mode != ray.WORKER_MODE:
            return
        self.restarted = bool(ray.get_runtime_context().was_current_actor_reconstructed)
        log = structlog.get_logger()
        (log.warning if self.restarted else log.info)("actor_started", actor=actor, restarted=self.restarted,
                                                       pid=os.getpid())

    async def started(self) -> tuple[int, bool]:
        """(this process, whether Ray restarted the actor into it)."""
        return os.getpid(), self.restarted

    async def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def pid(self) -> int:
        return os.getpid()

    async def stop(self) -> tuple[str, int, int]:
        """Cancel every call still running here (an LLM call in a retry backoff after a failed run); say where
        this process is, so the driver can kill it and wait for it to be gone, and how many asyncio tasks (calls
        and what they started) were cancelled.

        A cancelled call fails with TaskCancelledError, which Ray does not retry; a call cut short by
        ray.kill would be retried (max_task_retries), and Ray reports each such retry on the driver's
        console as `(raylet) Task ... failed`."""
        me = asyncio.current_task()
        running = [t for t in asyncio.all_tasks() if t is not me]
        for t in running:
            t.cancel()
        await asyncio.gather(*running, return_exceptions=True)
        return ray.get_runtime_context().get_node_id(), os.getpid(), len(running)
