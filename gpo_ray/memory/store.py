"""The optimization trajectory and every scored candidate, kept in a Chroma collection.

One record per prompt event: the initial prompt (step 0), the prompt chosen at each step, and each
scored candidate. Records are upserted under an id derived from what they are, so writing the same
record twice (a retried actor call, a resumed run) changes nothing. A step's candidates share one Chroma row
(a "pack", merged with what is already stored): a row costs Chroma about as much as the prompt embedding, and a
step has one chosen prompt but many candidates. Rows of single candidates written by older versions still read. Embeddings are computed here with
the injected embedder and handed to Chroma explicitly: the collection has no embedding function, so
Chroma never tries to download a model of its own.

Write-behind (embedded store): `stage` makes records visible to every read at once and appends their rows to a
pending log beside the Chroma directory (one JSON line per stage, flushed to the OS: a killed process loses
nothing acknowledged); `flush` writes everything staged in ONE upsert and empties the log. Chroma's embedded upsert
costs ~9 ms of CPU per call whatever it carries, ~1 ms per step more, so one upsert per many steps is what makes a
step cheap. Whoever opens the directory (open_chroma_client) first replays a log a killed writer left behind.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

import structlog

from gpo_ray.core.retrieval import DEFAULT_ORDER
from gpo_ray.core.retrieval import retrieve as retrieve_entries
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import ConfigError

if TYPE_CHECKING:
    from gpo_ray.llm.embedding import Embedder

log = structlog.get_logger()

RecordKind = Literal["initial", "chosen", "candidate"]
RECORD_KINDS: tuple[str, ...] = ("initial", "chosen", "candidate")
TRAJECTORY_KINDS: tuple[str, ...] = ("initial", "chosen")
PACK_KIND = "candidates"  # the stored row of one step's candidates (one JSON list in its document)
CANDIDATE_ROW_KINDS: tuple[str, ...] = ("candidate", PACK_KIND)  # a single candidate (older runs) or a pack
DEFAULT_COLLECTION = "gpo_trajectory"
PENDING_LOG = "pending.jsonl"  # rows staged but not yet in Chroma, in the embedded store's directory

Row = tuple[list[float], str, dict[str, Any]]  # a Chroma row: embedding, document, metadata


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


def pack_id(task: str, step: int) -> str:
    """The row of `task`'s candidates at `step`."""
    key = json.dumps([task, step, PACK_KIND], ensure_ascii=True)
    return f"{PACK_KIND}-{step}-{hashlib.sha256(key.encode('ascii')).hexdigest()}"


def pack_document(records: Sequence[MemoryRecord]) -> str:
    """One step's candidates as the JSON document of their row (prompt first, then what metadata() keeps)."""
    return json.dumps([[r.prompt, r.metadata()] for r in records], ensure_ascii=False)


def unpack_document(document: str) -> list[MemoryRecord]:
    return [MemoryRecord.from_stored(prompt=prompt, metadata=metadata) for prompt, metadata in json.loads(document)]


def _where(**conditions: Any) -> dict[str, Any]:
    """Chroma wants a bare condition for one clause and `$and` for several."""
    clauses = [{key: value} for key, value in conditions.items() if value is not None]
    if len(clauses) == 1:
        return clauses[0]
    return {"$and": clauses}


@dataclass(frozen=True)
class _Prepared:
    """Records made into rows, and what the store remembers of them once the rows are written or staged."""

    records: list[MemoryRecord]  # unique by id
    rows: dict[str, Row]
    trajectory: list[MemoryRecord]
    vectors: dict[str, list[float]]
    packs: dict[tuple[str, int], dict[str, MemoryRecord]]


def open_collection(client: Any, name: str) -> Any:
    # Vectors come from our embedder; cosine because retrieval compares directions, not lengths.
    return client.get_or_create_collection(name=name, embedding_function=None,
                                           configuration={"hnsw": {"space": "cosine"}})


def _upsert(collection: Any, rows: dict[str, Row]) -> None:
    collection.upsert(ids=list(rows), embeddings=[r[0] for r in rows.values()],
                      documents=[r[1] for r in rows.values()], metadatas=[r[2] for r in rows.values()])


class PendingLog:
    """Rows acknowledged but not yet in Chroma: one JSON line per staged add, {"collection": ..., "rows": {id:
    [embedding, document, metadata]}}, handed to the OS before the add returns (a killed process loses nothing; a
    machine crash is covered by the driver's checkpoint, whose steps a resume re-adds). Emptied after each flush."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None

    def append(self, collection: str, rows: dict[str, Row]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the store's life
        self._file.write(json.dumps({"collection": collection, "rows": rows}, ensure_ascii=False) + "\n")
        self._file.flush()

    def clear(self) -> None:
        if self._file is not None:
            self._file.truncate(0)  # opened for append: the next line goes to the (new) end
            self._file.flush()
        elif self.path.exists():
            self.path.write_bytes(b"")

    def read(self) -> dict[str, dict[str, Row]]:
        """Every collection's rows, a later line's row replacing an earlier one of the same id (a pack grows). A
        torn line (a write cut short by a kill: only ever the last) is skipped with a warning."""
        if not self.path.is_file():
            return {}
        lines = self.path.read_text(encoding="utf-8", errors="replace").split("\n")
        pending: dict[str, dict[str, Row]] = {}
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                rows = {str(i): (list(r[0]), str(r[1]), dict(r[2])) for i, r in entry["rows"].items()}
                collection = str(entry["collection"])
            except (ValueError, KeyError, TypeError, IndexError) as e:
                last = number >= len(lines) - 1  # the file ends with "\n": its last line is the empty string
                (log.warning if last else log.error)("memory_pending_line_skipped", path=str(self.path),
                                                     line=number, torn_last_line=last, error=type(e).__name__)
                continue
            pending.setdefault(collection, {}).update(rows)
        return pending


def replay_pending_log(client: Any, chroma_dir: Path) -> int:
    """Write the rows a killed writer left in `chroma_dir`'s pending log into their collections, then empty the
    log. Rows are upserted by id, so a replay repeated (killed again before the log was emptied) changes nothing."""
    pending_log = PendingLog(Path(chroma_dir) / PENDING_LOG)
    pending = pending_log.read()
    for name, rows in pending.items():
        if rows:
            _upsert(open_collection(client, name), rows)
    pending_log.clear()
    replayed = sum(map(len, pending.values()))
    if replayed:
        log.warning("memory_pending_replayed", path=str(pending_log.path), rows=replayed)
    return replayed


class TrajectoryStore:
    """Per-task trajectories and candidates over any chromadb client (embedded or server).

    Blocking: every method talks to Chroma synchronously. The Ray actor shell runs them in a thread.

    The store's owner is the only writer of its collection (one memory actor per run), so it keeps each task's
    trajectory, vectors included, in memory once read, and each prompt's vector once embedded: a step then costs
    one upsert, not a read of the whole trajectory and an embedding of a prompt seen before. At hundreds of steps
    a second across tasks the memory actor was the run's bottleneck (benchmarks/README.md).

    `add` writes through (one upsert per call). `stage` + `flush` write behind: staged rows are read from memory
    until `flush` upserts them all at once; with a `pending_log` each stage is on disk before it returns.
    """

    VECTOR_CACHE_SIZE = 50_000
    PACK_CACHE_SIZE = 20_000

    def __init__(self, *, client: Any, embedder: Embedder, collection_name: str = DEFAULT_COLLECTION,
                 pending_log: PendingLog | None = None) -> None:
        self._embedder = embedder
        if pending_log is not None:  # open_chroma_client replayed it already; a client from elsewhere may not have
            replay_pending_log(client, pending_log.path.parent)
        self._collection = open_collection(client, collection_name)
        self._collection_name = collection_name
        self._pending_log = pending_log
        self._staged: dict[str, Row] = {}  # rows staged and not yet upserted, by id
        self._log = log.bind(collection=collection_name)
        self._vectors: dict[str, list[float]] = {}  # prompt -> its embedding
        self._trajectories: dict[str, dict[str, tuple[MemoryRecord, list[float]]]] = {}  # task -> id -> row
        self._packs: dict[tuple[str, int], dict[str, MemoryRecord]] = {}  # (task, step) -> its stored candidates
        self._dimension: int | None = None
        self._loaded = False  # every task's trajectory read from the collection into _trajectories
        self._pack_keys: set[tuple[str, int]] = set()  # (task, step) of every candidate row in the collection

    def _embed(self, prompts: Sequence[str]) -> dict[str, list[float]]:
        missing = sorted({p for p in prompts if p not in self._vectors})
        if missing:
            if len(self._vectors) + len(missing) > self.VECTOR_CACHE_SIZE:
                self._vectors.clear()
            for prompt, vector in zip(missing, self._embedder.embed(missing), strict=True):
                self._vectors[prompt] = [float(x) for x in vector]
                self._dimension = len(vector)
        return {p: self._vectors[p] for p in prompts}

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Vectors of any texts, in order (cached like the prompts')."""
        vectors = self._embed(texts)
        return [vectors[t] for t in texts]

    def _prepare(self, records: Sequence[MemoryRecord]) -> _Prepared:
        by_id = {record.record_id: record for record in records}  # Chroma rejects duplicate ids in one batch
        unique = list(by_id.values())
        trajectory = [r for r in unique if r.kind in TRAJECTORY_KINDS]
        # Retrieval compares trajectory prompts only: a step embeds the prompt it moved to, not its candidates
        # (the embedder was most of this actor's CPU). Candidate packs carry a fixed placeholder vector.
        vectors = self._embed([record.prompt for record in trajectory])
        packs = self._merged_packs([r for r in unique if r.kind == "candidate"])
        rows: dict[str, Row] = {r.record_id: (vectors[r.prompt], r.prompt, r.metadata()) for r in trajectory}
        for (task, step), pack in packs.items():
            rows[pack_id(task, step)] = (self._placeholder(), pack_document(list(pack.values())),
                                         {"task": task, "step": step, "kind": PACK_KIND, "count": len(pack)})
        return _Prepared(records=unique, rows=rows, trajectory=trajectory, vectors=vectors, packs=packs)

    def _remember(self, prepared: _Prepared) -> None:
        for key, pack in prepared.packs.items():
            self._packs[key] = pack
            self._pack_keys.add(key)
        if self._loaded:
            for record in prepared.trajectory:
                self._trajectories.setdefault(record.task, {})[record.record_id] = (
                    record, prepared.vectors[record.prompt])

    def add(self, records: Sequence[MemoryRecord]) -> None:
        """Upsert records now (idempotent: a record already stored is overwritten with itself)."""
        if not records:
            return
        self.flush()  # anything staged first: one writer, one order
        prepared = self._prepare(records)
        _upsert(self._collection, prepared.rows)
        self._remember(prepared)
        self._log.debug("memory_added", records=len(prepared.records), rows=len(prepared.rows),
                        tasks=sorted({r.task for r in prepared.records}))

    def stage(self, records: Sequence[MemoryRecord]) -> None:
        """Make records visible to every read now and write them at the next `flush` (in the pending log first,
        when the store has one: durable against a killed process once this returns)."""
        if not records:
            return
        if not self._loaded:
            self._load_trajectories()  # staged trajectory rows live only in memory until flushed
        prepared = self._prepare(records)
        if self._pending_log is not None:
            self._pending_log.append(self._collection_name, prepared.rows)
        self._staged.update(prepared.rows)  # a pack staged again is the merged, larger one
        self._remember(prepared)

    @property
    def staged_rows(self) -> int:
        return len(self._staged)

    def flush(self) -> int:
        """Write every staged row in one upsert, then empty the pending log; how many rows were written. On an
        error the rows stay staged (and logged) for the next flush."""
        if not self._staged:
            return 0
        rows = len(self._staged)
        _upsert(self._collection, self._staged)
        self._staged = {}
        if self._pending_log is not None:
            self._pending_log.clear()
        self._log.debug("memory_flushed", rows=rows)
        return rows

    def _placeholder(self) -> list[float]:
        if self._dimension is None:
            self._dimension = len(self._embedder.embed(["placeholder"])[0])
        return [1.0] + [0.0] * (self._dimension - 1)

    def _merged_packs(self, candidates: Sequence[MemoryRecord]) -> dict[tuple[str, int], dict[str, MemoryRecord]]:
        """The packs these candidates go into, each merged with what its row already holds (a candidate added again
        replaces itself). Packs this store wrote or read are known; the others are read in one query."""
        if not candidates:
            return {}
        if not self._loaded:
            self._load_trajectories()
        keys = sorted({(r.task, r.step) for r in candidates})
        unknown = [k for k in keys if k not in self._packs]
        if len(self._packs) + len(unknown) > self.PACK_CACHE_SIZE:
            self._packs.clear()
            unknown = keys
        stored_rows = [k for k in unknown if k in self._pack_keys]  # the others are new: nothing to merge with
        stored: dict[tuple[str, int], str] = {k: self._staged[pack_id(*k)][1] for k in stored_rows
                                              if pack_id(*k) in self._staged}
        stored_rows = [k for k in stored_rows if k not in stored]
        if stored_rows:
            found = self._collection.get(ids=[pack_id(*k) for k in stored_rows], include=["documents", "metadatas"])
            stored |= {(str(m["task"]), int(m["step"])): doc
                       for doc, m in zip(found["documents"] or [], found["metadatas"] or [], strict=True)}
        for key in unknown:
            self._packs[key] = {r.record_id: r for r in unpack_document(stored[key])} if key in stored else {}
        merged = {key: dict(self._packs[key]) for key in keys}
        for r in candidates:
            merged[(r.task, r.step)][r.record_id] = r
        return merged

    def trajectory(self, task: str) -> list[TrajectoryEntry]:
        """The initial prompt and the prompt chosen at each step, in step order."""
        return [record.as_entry() for record, _ in self._trajectory_records(task)]

    def retrieve(self, task: str, *, strategy: str, k: int, order: str = DEFAULT_ORDER) -> list[TrajectoryEntry]:
        """GPO's update direction for `task`: up to k trajectory prompts, by score ascending or as selected."""
        stored = self._trajectory_records(task)
        entries = [record.as_entry() for record, _ in stored]
        vectors = [vector for _, vector in stored]
        return retrieve_entries(entries, strategy=strategy, k=k, vectors=vectors, order=order)

    def candidates(self, task: str, step: int | None = None) -> list[MemoryRecord]:
        """Scored candidates of a task (of one step if given): step order, best score first within a step."""
        result = self._with_staged(
            self._collection.get(where=_where(task=task, kind={"$in": list(CANDIDATE_ROW_KINDS)}, step=step),
                                 include=["documents", "metadatas"]),
            lambda m: m["task"] == task and m["kind"] in CANDIDATE_ROW_KINDS and step in (None, m["step"]))
        records = {r.record_id: r for r in self._rows(result)}
        return sorted(records.values(), key=lambda r: (r.step, -r.score, r.prompt))

    def last_step(self, task: str) -> int:
        """The last completed step (one with a trajectory entry): 0 after the initial prompt, -1 if none."""
        entries = self.trajectory(task)
        return entries[-1].step if entries else -1

    def tasks(self) -> list[str]:
        """Every task with at least one record, sorted."""
        result = self._with_staged(self._collection.get(include=["metadatas"]))
        return sorted({str(metadata["task"]) for metadata in result["metadatas"] or []})

    def count(self) -> int:
        """How many records the collection holds, all tasks and kinds (each candidate of a pack counts)."""
        result = self._with_staged(self._collection.get(include=["metadatas"]))
        return sum(int(m.get("count", 1)) if m.get("kind") == PACK_KIND else 1 for m in result["metadatas"] or [])

    def _with_staged(self, result: dict[str, Any], wanted: Any = None) -> dict[str, Any]:
        """A Chroma get's result as it will be once the staged rows are flushed (those `wanted` by metadata)."""
        if not self._staged:
            return result
        staged = {i: row for i, row in self._staged.items() if wanted is None or wanted(row[2])}
        unstaged = [n for n, i in enumerate(result["ids"]) if i not in staged]
        out: dict[str, Any] = {"ids": [result["ids"][n] for n in unstaged] + list(staged)}
        for key, column in (("documents", 1), ("metadatas", 2)):
            if result.get(key) is not None:
                out[key] = [result[key][n] for n in unstaged] + [row[column] for row in staged.values()]
        return out

    @staticmethod
    def _rows(result: dict[str, Any]) -> list[MemoryRecord]:
        """Records of a Chroma get: a pack row is its step's candidates, any other row one record."""
        out: list[MemoryRecord] = []
        for document, metadata in zip(result["documents"] or [], result["metadatas"] or [], strict=True):
            if metadata.get("kind") == PACK_KIND:
                out += unpack_document(document)
            else:
                out.append(MemoryRecord.from_stored(prompt=document, metadata=dict(metadata)))
        return out

    def _trajectory_records(self, task: str) -> list[tuple[MemoryRecord, list[float]]]:
        if not self._loaded:
            self._load_trajectories()
        known = self._trajectories.setdefault(task, {})
        # Step order; the initial prompt before a chosen one at the same step; then a stable tie-break.
        return sorted(known.values(), key=lambda pair: (pair[0].step, pair[0].kind != "initial", pair[0].prompt))

    def _load_trajectories(self) -> None:
        """Every task's trajectory, vectors included, and which candidate packs exist, in one read each (a fresh or
        restarted store; then kept, this store being the collection's only writer). One query per task scanned
        the collection once per task: at a thousand tasks that grew with the square of the run."""
        result = self._collection.get(where={"kind": {"$in": list(TRAJECTORY_KINDS)}},
                                      include=["documents", "metadatas", "embeddings"])
        embeddings = result["embeddings"] if result["embeddings"] is not None else []
        for record_id, prompt, metadata, vector in zip(
                result["ids"], result["documents"] or [], result["metadatas"] or [], embeddings, strict=True):
            record = MemoryRecord.from_stored(prompt=prompt, metadata=dict(metadata))
            self._trajectories.setdefault(record.task, {}).setdefault(
                record_id, (record, [float(x) for x in vector]))  # a row added since the read is newer: kept
        packs = self._collection.get(where={"kind": PACK_KIND}, include=["metadatas"])
        self._pack_keys.update((str(m["task"]), int(m["step"])) for m in packs["metadatas"] or [])
        self._loaded = True


def open_chroma_client(*, path: Path | None, host: str | None, port: int, token_env: str | None) -> Any:
    """An embedded PersistentClient at `path`, or an HttpClient for a Chroma server at host:port.

    Opening an embedded store first writes into it what a killed writer left in its pending log, so open a run's
    directory only as its single writer or once that writer is gone.

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
    client = chromadb.PersistentClient(path=str(path), settings=settings)
    replay_pending_log(client, path)  # rows a killed writer had acknowledged: in the store before anyone reads it
    return client
