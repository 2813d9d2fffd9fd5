"""The run's trajectory memory as several actors: start them, and route each task's calls to its shard.

One memory actor served every task of a run and bounded runs with many cheap steps (benchmarks/README.md). Here
each shard is a `TrajectoryMemory` actor, the only writer of its own store (gpo_ray/memory/sharding.py: which task
goes where, and the layout a run keeps for its whole life). The driver talks to `ShardedMemory`, which sends a
task's calls to the one actor that holds it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from gpo_ray.actors.memory import (
    EmbedderFactory,
    start_trajectory_memory,
    wait_until_gone,
)
from gpo_ray.config import ClusterSettings
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.memory.sharding import MemoryLayout, shard_of
from gpo_ray.memory.store import MemoryRecord

log = structlog.get_logger()


def shard_actor_name(run_id: str, shard: int, shards: int) -> str:
    """The named actor of one shard; with one shard, the name a run had before sharding."""
    return f"gpo-memory-{run_id}" if shards == 1 else f"gpo-memory-{run_id}-{shard}"


class ShardedMemory:
    """Driver-side router over the shards' actor handles (the controller's memory)."""

    def __init__(self, handles: Sequence[Any]) -> None:
        if not handles:
            raise ValueError("ShardedMemory needs at least one memory actor")
        self.handles = list(handles)
        self._next_embedder = itertools.cycle(self.handles)

    @property
    def shards(self) -> int:
        return len(self.handles)

    def for_task(self, task: str) -> Any:
        """The actor that holds `task`'s memory."""
        return self.handles[shard_of(task, len(self.handles))]

    async def add(self, records: Sequence[MemoryRecord]) -> None:
        """Store records of any tasks, each on its task's shard (the shards write in parallel)."""
        by_shard: dict[int, list[MemoryRecord]] = defaultdict(list)
        for r in records:
            by_shard[shard_of(r.task, len(self.handles))].append(r)
        await asyncio.gather(*(self.handles[k].add.remote(rows) for k, rows in by_shard.items()))

    async def add_and_retrieve(
        self, task: str, records: Sequence[MemoryRecord], *, strategy: str, k: int, order: str
    ) -> list[TrajectoryEntry]:
        """One task's step stored, and what retrieve() gives right after, in one round trip to its shard."""
        assert all(r.task == task for r in records), "one task's records"
        return await self.for_task(task).add.remote(
            list(records), retrieve={"task": task, "strategy": strategy, "k": k, "order": order})

    async def retrieve(self, task: str, *, strategy: str, k: int, order: str) -> list[TrajectoryEntry]:
        return await self.for_task(task).retrieve.remote(task, strategy=strategy, k=k, order=order)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of any texts; every shard has the same embedder, so the shards take turns."""
        return await next(self._next_embedder).embed.remote(list(texts))


def start_memory_shards(
    *,
    run_dir: Path,
    cluster: ClusterSettings,
    layout: MemoryLayout,
    embedder_factory: EmbedderFactory | None = None,
) -> ShardedMemory:
    """Start (or, named, find) one memory actor per shard of `layout`, after any of a killed driver have gone."""
    names = [shard_actor_name(layout.run_id, k, layout.shards) for k in range(layout.shards)]
    for name in names:
        wait_until_gone(name)
    chroma_root = Path(run_dir) / "chroma"
    handles = [
        start_trajectory_memory(run_dir=run_dir, cluster=cluster, name=name, embedder_factory=embedder_factory,
                                collection_name=layout.collection(k), chroma_dir=layout.chroma_dir(chroma_root, k))
        for k, name in enumerate(names)
    ]
    log.info("memory_shards_started", shards=layout.shards)
    return ShardedMemory(handles)
