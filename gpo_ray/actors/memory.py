"""TrajectoryMemory: the one Ray actor that owns the trajectory store.

Only this actor opens the embedded Chroma directory (RUN_DIR/chroma), so there is a single writer.
It builds its Chroma client and embedder inside the worker process; when Ray restarts it after a
crash, the new instance reopens the same store and nothing is lost. Every method is idempotent
(records are upserted by deterministic id), so Ray may retry calls freely across a restart.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import structlog
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.config import ClusterSettings
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.memory.store import (
    DEFAULT_COLLECTION,
    MemoryRecord,
    TrajectoryStore,
    open_chroma_client,
)
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import NodeResource

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from gpo_ray.llm.embedding import Embedder

log = structlog.get_logger()

# A Chroma server that restarts (a deploy, a crash, a node move) cannot be reached for a few seconds: a store call
# is retried that long before its error goes to the driver, which would stop the run (resumable, but stopped).
CHROMA_SERVER_RETRY_S = 60.0

EmbedderFactory = Callable[[], "Embedder"]


def _default_embedder() -> Embedder:
    from gpo_ray.llm.embedding import MiniLMEmbedder

    return MiniLMEmbedder()


class TrajectoryMemory(WhereAmI):
    """Async actor shell over TrajectoryStore: blocking Chroma calls run in a thread, one at a time.

    One FIFO lock serialises store calls: Ray starts a caller's calls in submission order, so a
    caller that fires add() then retrieve() without waiting still reads its own write.
    """

    def __init__(
        self,
        *,
        chroma_path: str | None,
        chroma_host: str | None,
        chroma_port: int,
        chroma_token_env: str | None,
        collection_name: str = DEFAULT_COLLECTION,
        embedder_factory: EmbedderFactory | None = None,
        server_retry_s: float = CHROMA_SERVER_RETRY_S,
    ) -> None:
        self.announce_start("memory")
        client = open_chroma_client(
            path=Path(chroma_path) if chroma_path is not None else None,
            host=chroma_host,
            port=chroma_port,
            token_env=chroma_token_env,
        )
        embedder = (embedder_factory or _default_embedder)()
        self._store = TrajectoryStore(client=client, embedder=embedder, collection_name=collection_name)
        self._lock = asyncio.Lock()
        self._retry_s = server_retry_s if chroma_host is not None else 0.0  # an embedded store has no server to wait for
        log.info("trajectory_memory_ready", records=self._store.count(), collection=collection_name)

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        async with self._lock:
            return await call_until_reachable(lambda: asyncio.to_thread(method, *args, **kwargs),
                                              retry_s=self._retry_s)

    async def add(self, records: Sequence[MemoryRecord]) -> None:
        await self._call(self._store.add, list(records))

    async def trajectory(self, task: str) -> list[TrajectoryEntry]:
        return await self._call(self._store.trajectory, task)

    async def retrieve(
        self, task: str, *, strategy: str, k: int, order: str = "score_ascending"
    ) -> list[TrajectoryEntry]:
        return await self._call(self._store.retrieve, task, strategy=strategy, k=k, order=order)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of any texts by the store's embedder (relevance selection of past feedback)."""
        return await self._call(self._store.embed, list(texts))

    async def candidates(self, task: str, step: int | None = None) -> list[MemoryRecord]:
        return await self._call(self._store.candidates, task, step)

    async def last_step(self, task: str) -> int:
        return await self._call(self._store.last_step, task)

    async def tasks(self) -> list[str]:
        return await self._call(self._store.tasks)

    async def count(self) -> int:
        return await self._call(self._store.count)


async def call_until_reachable(call: Callable[[], Any], *, retry_s: float,
                               sleep: Callable[[float], Any] = asyncio.sleep) -> Any:
    """`await call()`, retried with backoff while the Chroma server cannot be reached (connection refused or cut),
    for up to `retry_s` seconds; each retry logged. Store calls are idempotent (upserts by id, reads)."""
    import httpx

    deadline = time.monotonic() + retry_s
    delay = 0.2
    while True:
        try:
            return await call()
        except (httpx.TransportError, ConnectionError) as e:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("chroma_server_unreachable_retrying", error=f"{type(e).__name__}: {e}", retry_in_s=delay)
            await sleep(delay)
            delay = min(2 * delay, 5.0)


MEMORY_NAMESPACE = "gpo-ray"


def wait_until_gone(name: str, *, timeout_s: float = 60.0) -> None:
    """Block until no actor of this name is alive: a crashed driver's memory actor is torn down by Ray
    shortly after the driver dies, and only one process may own the Chroma directory."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=MEMORY_NAMESPACE)
        except ValueError:
            return
        time.sleep(0.2)
    raise RuntimeError(f"the memory actor {name!r} of an earlier driver is still alive after {timeout_s:.0f}s")


def start_trajectory_memory(
    *,
    run_dir: Path,
    cluster: ClusterSettings,
    name: str | None = None,
    embedder_factory: EmbedderFactory | None = None,
    collection_name: str = DEFAULT_COLLECTION,
) -> ActorHandle:
    """Start the memory actor: embedded Chroma in RUN_DIR/chroma, or a Chroma server if configured.

    In embedded mode the actor is pinned to this (the driver's) node, where run_dir is, so that a
    restart reopens the same directory. With `name`, an actor of that name that already exists is
    returned instead of a new one. `embedder_factory` must be a picklable zero-argument callable;
    it runs inside the actor process (default: the local MiniLM).
    """
    embedded = cluster.chroma_host is None
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": -1}
    if embedded:
        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            node_id=ray.get_runtime_context().get_node_id(), soft=False
        )
    elif NodeResource.HEAD in ray.cluster_resources():
        options["resources"] = {str(NodeResource.HEAD): 0.01}  # with a Chroma server: on the head, beside the controller
    if name is not None:
        options |= {"name": name, "namespace": MEMORY_NAMESPACE, "get_if_exists": True}
    chroma_path = str(RunDirectory(Path(run_dir)).chroma_dir.resolve()) if embedded else None
    actor = (
        ray.remote(TrajectoryMemory)
        .options(**options)
        .remote(
            chroma_path=chroma_path,
            chroma_host=cluster.chroma_host,
            chroma_port=cluster.chroma_port,
            chroma_token_env=cluster.chroma_token_env,
            collection_name=collection_name,
            embedder_factory=embedder_factory,
        )
    )
    log.info("trajectory_memory_started", name=name, chroma_path=chroma_path, chroma_host=cluster.chroma_host)
    return actor
