"""The optimization trajectory and every scored candidate, kept in a Chroma collection.

One record per prompt event: the initial prompt (step 0), the prompt chosen at each step, and each
scored candidate. Records are upserted under an id derived from what they are, so writing the same
record twice (a retried actor call, a resumed run) changes nothing. Embeddings are computed here with
the injected embedder and handed to Chroma explicitly: the collection has no embedding function, so
Chroma never tries to download a model of its own.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import structlog

from gpo_ray.core.retrieval import retrieve as retrieve_entries
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import ConfigError

if TYPE_CHECKING:
    from gpo_ray.llm.embedding import Embedder

log = structlog.get_logger()

RecordKind = Literal["initial", "chosen", "candidate"]
RECORD_KINDS: tuple[str, ...] = ("initial", "chosen", "candidate")
TRAJECTORY_KINDS: tuple[str, ...] = ("initial", "chosen")
DEFAULT_COLLECTION = "gpo_trajectory"


@dataclass(frozen=True)
class MemoryRecord:
    """One prompt on a task's optimization path, with how it scored and how it came about."""

    task: str
    step: int
    prompt: str
    score: float  # in [0, 1]
    kind: RecordKind
    parent: str = ""  # the prompt this one was edited from; "" for the initial prompt
    edit_distance: int = 0
    edit_budget: int = 0
    chosen: bool = False

    def __post_init__(self) -> None:
        if not self.task:
            raise ValueError("a memory record needs a task name")
        if self.kind not in RECORD_KINDS:
            raise ValueError(f"record kind must be one of {', '.join(RECORD_KINDS)}, got {self.kind!r}")
        if self.step < 0:
            raise ValueError(f"step must be >= 0, got {self.step}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")

    @property
    def record_id(self) -> str:
        """Same task, step, kind and prompt -> same id, so a repeated upsert is a no-op."""
        prompt_hash = hashlib.sha256(self.prompt.encode("utf-8")).hexdigest()
        key = json.dumps([self.task, self.step, self.kind, prompt_hash], ensure_ascii=True)
        return f"{self.kind}-{self.step}-{hashlib.sha256(key.encode('ascii')).hexdigest()}"

    def metadata(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "step": self.step,
            "score": float(self.score),
            "kind": self.kind,
            "parent": self.parent,
            "edit_distance": self.edit_distance,
            "edit_budget": self.edit_budget,
            "chosen": self.chosen,
        }

    @classmethod
    def from_stored(cls, *, prompt: str, metadata: dict[str, Any]) -> MemoryRecord:
        return cls(
            task=str(metadata["task"]),
            step=int(metadata["step"]),
            prompt=prompt,
            score=float(metadata["score"]),
            kind=metadata["kind"],
            parent=str(metadata.get("parent", "")),
            edit_distance=int(metadata.get("edit_distance", 0)),
            edit_budget=int(metadata.get("edit_budget", 0)),
            chosen=bool(metadata.get("chosen", False)),
        )

    def as_entry(self) -> TrajectoryEntry:
        return TrajectoryEntry(prompt=self.prompt, score=self.score, step=self.step)


def _where(**conditions: Any) -> dict[str, Any]:
    """Chroma wants a bare condition for one clause and `$and` for several."""
    clauses = [{key: value} for key, value in conditions.items() if value is not None]
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


class TrajectoryStore:
    """Per-task trajectories and candidates over any chromadb client (embedded or server).

    Blocking: every method talks to Chroma synchronously. The Ray actor shell runs them in a thread.

    The store's owner is the only writer of its collection (one memory actor per run), so it keeps each task's
    trajectory, vectors included, in memory once read, and each prompt's vector once embedded: a step then costs
    one upsert, not a read of the whole trajectory and an embedding of a prompt seen before. At hundreds of steps
    a second across tasks the memory actor was the run's bottleneck (benchmarks/README.md).
    """

    VECTOR_CACHE_SIZE = 50_000

    def __init__(self, *, client: Any, embedder: Embedder, collection_name: str = DEFAULT_COLLECTION) -> None:
        self._embedder = embedder
        # Vectors come from our embedder; cosine because retrieval compares directions, not lengths.
        self._collection = client.get_or_create_collection(
            name=collection_name,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine"}},
        )
        self._log = log.bind(collection=collection_name)
        self._vectors: dict[str, list[float]] = {}  # prompt -> its embedding
        self._trajectories: dict[str, dict[str, tuple[MemoryRecord, list[float]]]] = {}  # task -> id -> row

    def _embed(self, prompts: Sequence[str]) -> dict[str, list[float]]:
        missing = sorted({p for p in prompts if p not in self._vectors})
        if missing:
            if len(self._vectors) + len(missing) > self.VECTOR_CACHE_SIZE:
                self._vectors.clear()
            for prompt, vector in zip(missing, self._embedder.embed(missing), strict=True):
                self._vectors[prompt] = [float(x) for x in vector]
        return {p: self._vectors[p] for p in prompts}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of any texts, in order (cached like the prompts')."""
        vectors = self._embed(texts)
        return [vectors[t] for t in texts]

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Upsert records (idempotent: a record already stored is overwritten with itself)."""
        if not records:
            return
        by_id = {record.record_id: record for record in records}  # Chroma rejects duplicate ids in one batch
        unique = list(by_id.values())
        # Retrieval compares trajectory prompts only. Candidates are kept for reports and audits, so they carry
        # a fixed placeholder vector unless their prompt is on the trajectory: a step then embeds one prompt, not
        # `candidates` + 1 (the embedder was most of this actor's CPU).
        embedded = [r for r in unique if r.kind in TRAJECTORY_KINDS] or unique[:1]
        vectors = self._embed([record.prompt for record in embedded])
        placeholder = [1.0] + [0.0] * (len(next(iter(vectors.values()))) - 1)
        self._collection.upsert(
            ids=list(by_id),
            embeddings=[vectors.get(record.prompt, placeholder) for record in unique],
            documents=[record.prompt for record in unique],
            metadatas=[record.metadata() for record in unique],
        )
        for record_id, record in by_id.items():
            known = self._trajectories.get(record.task)
            if known is not None and record.kind in TRAJECTORY_KINDS:
                known[record_id] = (record, vectors[record.prompt])
        self._log.debug("memory_added", records=len(unique), tasks=sorted({r.task for r in unique}))

    def trajectory(self, task: str) -> list[TrajectoryEntry]:
        """The initial prompt and the prompt chosen at each step, in step order."""
        return [record.as_entry() for record, _ in self._trajectory_records(task)]

    def retrieve(self, task: str, *, strategy: str, k: int, order: str = "score_ascending") -> list[TrajectoryEntry]:
        """GPO's update direction for `task`: up to k trajectory prompts, by score ascending or as selected."""
        stored = self._trajectory_records(task)
        entries = [record.as_entry() for record, _ in stored]
        vectors = [vector for _, vector in stored]
        return retrieve_entries(entries, strategy=strategy, k=k, vectors=vectors, order=order)

    def candidates(self, task: str, step: int | None = None) -> list[MemoryRecord]:
        """Scored candidates of a task (of one step if given): step order, best score first within a step."""
        records = self._records(_where(task=task, kind="candidate", step=step))
        return sorted(records, key=lambda r: (r.step, -r.score, r.prompt))

    def last_step(self, task: str) -> int:
        """The last completed step (one with a trajectory entry): 0 after the initial prompt, -1 if none."""
        entries = self.trajectory(task)
        return entries[-1].step if entries else -1

    def tasks(self) -> list[str]:
        """Every task with at least one record, sorted."""
        result = self._collection.get(include=["metadatas"])
        return sorted({str(metadata["task"]) for metadata in result["metadatas"] or []})

    def count(self) -> int:
        """How many records the collection holds, all tasks and kinds."""
        return int(self._collection.count())

    def _records(self, where: dict[str, Any]) -> list[MemoryRecord]:
        result = self._collection.get(where=where, include=["documents", "metadatas"])
        return [
            MemoryRecord.from_stored(prompt=prompt, metadata=dict(metadata))
            for prompt, metadata in zip(result["documents"] or [], result["metadatas"] or [], strict=True)
        ]

    def _trajectory_records(self, task: str) -> list[tuple[MemoryRecord, list[float]]]:
        known = self._trajectories.get(task)
        if known is None:  # first read of this task (a fresh or resumed run): from Chroma, then kept
            result = self._collection.get(where=_where(task=task, kind={"$in": list(TRAJECTORY_KINDS)}),
                                          include=["documents", "metadatas", "embeddings"])
            embeddings = result["embeddings"] if result["embeddings"] is not None else []
            known = {
                record_id: (MemoryRecord.from_stored(prompt=prompt, metadata=dict(metadata)),
                            [float(x) for x in vector])
                for record_id, prompt, metadata, vector in zip(
                    result["ids"], result["documents"] or [], result["metadatas"] or [], embeddings, strict=True)
            }
            self._trajectories[task] = known
        # Step order; the initial prompt before a chosen one at the same step; then a stable tie-break.
        return sorted(known.values(), key=lambda pair: (pair[0].step, pair[0].kind != "initial", pair[0].prompt))


def open_chroma_client(*, path: Path | None, host: str | None, port: int, token_env: str | None) -> Any:
    """An embedded PersistentClient at `path`, or an HttpClient for a Chroma server at host:port.

    The server's auth token is read from the environment variable named `token_env`; it goes into a
    request header only, never into a log line or an error message.
    """
    import chromadb
    from chromadb.config import Settings

    settings = Settings(anonymized_telemetry=False)
    if host is not None:
        headers: dict[str, str] = {}
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise ConfigError(f"cluster.chroma_token_env: environment variable {token_env} is not set or empty")
            headers["Authorization"] = f"Bearer {token}"
        log.info("chroma_connect", host=host, port=port, authenticated=bool(headers))
        return chromadb.HttpClient(host=host, port=port, headers=headers, settings=settings)
    if path is None:
        raise ValueError("open_chroma_client needs a path (embedded store) or a host (Chroma server)")
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    log.info("chroma_open", path=str(path))
    return chromadb.PersistentClient(path=str(path), settings=settings)
