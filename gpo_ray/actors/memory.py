"""TrajectoryMemory: the one Ray actor that owns the trajectory store.

Only this actor opens the embedded Chroma directory (RUN_DIR/chroma), so there is a single writer.
It builds its Chroma client and embedder inside the worker process; when Ray restarts it after a
crash, the new instance reopens the same store and nothing is lost. Every method is idempotent
(records are upserted by deterministic id), so Ray may retry calls freely across a restart - and so may the actor
itself: with a Chroma server, a call that cannot reach it (restarting, a network blip) is tried again for up to
SERVER_RETRY_S before it fails.

With an embedded store the actor writes behind (cluster.memory_flush_interval_s > 0): an add is acknowledged once its
rows are in the store's pending log (RUN_DIR/chroma/pending.jsonl, or a shard's folder) and readable from memory;
Chroma gets every staged row in one upsert after the interval, when FLUSH_ROWS are staged, and on stop(). A
restarted actor replays the log on opening its store. A Chroma server is written through: its node may not be this
one, and no local file would survive the actor moving.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import structlog
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.config import ClusterSettings
from gpo_ray.core.retrieval import DEFAULT_ORDER
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.memory.store import (
    DEFAULT_COLLECTION,
    PENDING_LOG,
    MemoryRecord,
    PendingLog,
    TrajectoryStore,
    open_chroma_client,
)
from gpo_ray.runtime.run_dir import RunDirectory
from gpo_ray.vocabulary import NodeResource

if TYPE_CHECKING:
    from ray.actor import ActorHandle

    from gpo_ray.llm.embedding import Embedder

log = structlog.get_logger()

EmbedderFactory = Callable[[], "Embedder"]

SERVER_RETRY_S = 120.0  # how long a Chroma server may be unreachable before a memory call fails
_FIRST_RETRY_S, _LONGEST_RETRY_S = 0.2, 5.0
FLUSH_ROWS = 128  # staged rows (a step is ~2) written at once rather than after the interval


def server_unreachable(error: BaseException) -> bool:
    """The Chroma server did not answer (refused, reset, timed out): worth another try. Its own answers (a bad
    request, a missing collection) are not."""
    import httpx

    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:  # chromadb wraps it: HttpClient() raises ValueError from it
        if isinstance(cause, (httpx.TransportError, ConnectionError)):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _default_embedder() -> Embedder:
    from gpo_ray.llm.embedding import MiniLMEmbedder

    return MiniLMEmbedder()


async def _settle(done: asyncio.Future[Any], work: Coroutine[Any, Any, Any]) -> None:
    """Await `work` and hand its result, or its error, to the caller waiting on `done`."""
    try:
        result = await work
    except Exception as e:  # noqa: BLE001 - handed to the caller
        if not done.done():
            done.set_exception(e)
        return
    if not done.done():
        done.set_result(result)


class TrajectoryMemory(WhereAmI):
    """Async actor shell over TrajectoryStore: blocking Chroma calls run in a thread, one at a time, in the order
    the calls arrived.

    Ray starts a caller's calls in submission order, so a caller that fires add() then retrieve() without waiting
    still reads its own write. Adds that arrive while the store is busy are written together, in one upsert with
    one batch of embeddings (group commit): each add still returns only once its records are stored, so a restarted
    actor finds everything an add returned for, and many tasks' steps cost the store far less than one by one.
    Writing behind (embedded store), "stored" means staged and in the pending log; flushes go through the same
    queue, so they too run one at a time, in order.
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
        server_retry_s: float = SERVER_RETRY_S,
        flush_interval_s: float = 0.0,
    ) -> None:
        self.announce_start("memory")
        self._server = chroma_host is not None
        self._server_retry_s = server_retry_s
        self._server_retries = 0
        self._flush_interval_s = flush_interval_s
        self._write_behind = chroma_path is not None and chroma_host is None and flush_interval_s > 0
        embedder = (embedder_factory or _default_embedder)()

        def open_store() -> TrajectoryStore:
            client = open_chroma_client(
                path=Path(chroma_path) if chroma_path is not None else None,
                host=chroma_host,
                port=chroma_port,
                token_env=chroma_token_env,
            )
            pending_log = PendingLog(Path(chroma_path) / PENDING_LOG) if self._write_behind else None
            return TrajectoryStore(client=client, embedder=embedder, collection_name=collection_name,
                                   pending_log=pending_log)

        deadline, delay = time.monotonic() + self._server_retry_s, _FIRST_RETRY_S
        while True:  # a restarted actor may find the server restarting too
            try:
                self._store = open_store()
                break
            except Exception as e:
                if not self._retry_allowed(e, deadline):
                    raise
                log.warning("chroma_server_unreachable_retrying", error=type(e).__name__, retry_in_s=delay, during="open")
                time.sleep(delay)
                delay = min(_LONGEST_RETRY_S, delay * 2)
        self._ops: deque[tuple[str, Any, asyncio.Future[Any]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._batches = self._batched_steps = 0
        self._linger: asyncio.TimerHandle | None = None  # the flush due after the interval
        log.info("trajectory_memory_ready", records=self._store.count(), collection=collection_name,
                 write_behind=self._write_behind)

    def _retry_allowed(self, error: BaseException, deadline: float) -> bool:
        return self._server and server_unreachable(error) and time.monotonic() < deadline

    async def _in_thread(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One store call in a worker thread; on a Chroma server that does not answer, retried with backoff."""
        deadline, delay = time.monotonic() + self._server_retry_s, _FIRST_RETRY_S
        while True:
            try:
                return await asyncio.to_thread(method, *args, **kwargs)
            except Exception as e:
                if not self._retry_allowed(e, deadline):
                    raise
                self._server_retries += 1
                log.warning("chroma_server_unreachable_retrying", error=type(e).__name__, retry_in_s=delay,
                            during=getattr(method, "__name__", "call"))
                await asyncio.sleep(delay)
                delay = min(_LONGEST_RETRY_S, delay * 2)

    def _submit(self, kind: str, payload: Any) -> asyncio.Future[Any]:
        """Queue one store operation; ("add", records) ops next to each other are written as one; ("flush", None)
        writes what is staged."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._ops.append((kind, payload, done))
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._drain())
        return done

    async def _drain(self) -> None:
        while self._ops:
            kind, payload, done = self._ops.popleft()
            if kind == "add":
                batch = [(payload, done)]
                while self._ops and self._ops[0][0] == "add":
                    _, more, more_done = self._ops.popleft()
                    batch.append((more, more_done))
                records = [r for recs, _ in batch for r in recs]
                self._batched_steps += len(batch)
                try:
                    if self._write_behind:
                        await self._in_thread(self._store.stage, records)
                    else:
                        self._batches += 1
                        await self._in_thread(self._store.add, records)
                except Exception as e:  # noqa: BLE001 - every add of the batch fails with the store's error
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(e)
                    continue
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)
                if self._write_behind:
                    if self._store.staged_rows >= FLUSH_ROWS:
                        await self._flush_staged()
                    elif self._linger is None:
                        self._linger = asyncio.get_running_loop().call_later(self._flush_interval_s, self._flush_due)
            elif kind == "flush":
                await _settle(done, self._flush_staged(raise_error=True))
            else:
                method, args, kwargs = payload
                await _settle(done, self._in_thread(method, *args, **kwargs))

    def _flush_due(self) -> None:
        self._linger = None
        done = self._submit("flush", None)
        done.add_done_callback(lambda f: f.cancelled() or f.exception())  # failures are logged by the flush

    async def _flush_staged(self, *, raise_error: bool = False) -> None:
        """Write what is staged now (from the queue's worker only: one store call at a time). A failed flush keeps
        the rows staged and in the pending log, and is tried again after the interval."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if not self._store.staged_rows:
            return
        try:
            await self._in_thread(self._store.flush)
        except Exception as e:
            log.warning("memory_flush_failed", error=f"{type(e).__name__}: {e}", staged_rows=self._store.staged_rows)
            self._linger = asyncio.get_running_loop().call_later(max(self._flush_interval_s, 1.0), self._flush_due)
            if raise_error:
                raise
            return
        self._batches += 1

    async def flush(self) -> None:
        """Write every staged row to Chroma now (after the calls queued before this one)."""
        await self._submit("flush", None)

    async def stop(self) -> tuple[str, int, int]:
        """Flush, then stop as every actor does: a run that ends leaves its memory in Chroma, its pending log empty."""
        if self._write_behind:
            try:
                await self.flush()
            except Exception as e:  # noqa: BLE001 - the pending log still holds the rows: the next opener writes them
                log.warning("memory_flush_on_stop_failed", error=f"{type(e).__name__}: {e}")
        return await super().stop()

    async def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await self._submit("call", (method, args, kwargs))

    async def add(
        self, records: Sequence[MemoryRecord], *, retrieve: dict[str, Any] | None = None
    ) -> list[TrajectoryEntry] | None:
        """Store records (durable when this returns). With `retrieve` ({task, strategy, k, order}), also return what
        retrieve() gives right after: a step's write and the next step's read in one call."""
        stored = self._submit("add", list(records))
        read = None
        if retrieve is not None:
            task = retrieve["task"]
            read = self._submit("call", (self._store.retrieve, (task,),
                                         {k: v for k, v in retrieve.items() if k != "task"}))
        await stored
        return await read if read is not None else None

    async def trajectory(self, task: str) -> list[TrajectoryEntry]:
        return await self._call(self._store.trajectory, task)

    async def retrieve(
        self, task: str, *, strategy: str, k: int, order: str = DEFAULT_ORDER
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

    async def server_retries(self) -> int:
        """Store calls of this instance tried again because the Chroma server did not answer (it does not wait
        for the store, so it answers while a call is being retried)."""
        return self._server_retries

    async def write_stats(self) -> dict[str, int]:
        """How many store writes (upserts) carried how many adds (group commit and write-behind at work: adds >
        writes under load)."""
        return {"writes": self._batches, "adds": self._batched_steps}


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
    raise RuntimeError(f"the actor {name!r} of an earlier driver is still alive after {timeout_s:.0f}s")


def start_trajectory_memory(
    *,
    run_dir: Path,
    cluster: ClusterSettings,
    name: str | None = None,
    embedder_factory: EmbedderFactory | None = None,
    collection_name: str = DEFAULT_COLLECTION,
    chroma_dir: Path | None = None,
) -> ActorHandle:
    """Start the memory actor: embedded Chroma in RUN_DIR/chroma (or `chroma_dir`, a shard's own folder), or a
    Chroma server if configured.

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
    chroma_path = str((chroma_dir or RunDirectory(Path(run_dir)).chroma_dir).resolve()) if embedded else None
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
            flush_interval_s=cluster.memory_flush_interval_s,
        )
    )
    log.info("trajectory_memory_started", name=name, chroma_path=chroma_path, chroma_host=cluster.chroma_host)
    return actor
