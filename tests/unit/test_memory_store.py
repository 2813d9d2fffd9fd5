"""TrajectoryStore on a real embedded Chroma (PersistentClient in tmp_path) with a fake embedder."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from gpo_ray.core.retrieval import retrieve as core_retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.errors import ConfigError
from gpo_ray.memory import MemoryRecord, TrajectoryStore, open_chroma_client
from gpo_ray.memory.store import PENDING_LOG, PendingLog


class BagOfWordsEmbedder:
    """Deterministic: each lower-cased word hashed into one of 64 dims, then L2-normalised."""

    dims = 64

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        out = []
        for text in texts:
            v = [0.0] * self.dims
            for word in re.findall(r"\w+", text.lower()):
                v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % self.dims] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


def forget_open_clients() -> None:
    """Chroma shares one system per path inside a process; drop it so the next open really reopens."""
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()


@pytest.fixture
def chroma_path(tmp_path: Path):
    yield tmp_path / "chroma"
    forget_open_clients()


def open_store(path: Path, embedder: BagOfWordsEmbedder | None = None) -> TrajectoryStore:
    client = open_chroma_client(path=path, host=None, port=8000, token_env=None)
    return TrajectoryStore(client=client, embedder=embedder or BagOfWordsEmbedder())


def initial(task: str, prompt: str, score: float) -> MemoryRecord:
    return MemoryRecord(task=task, step=0, prompt=prompt, score=score, kind="initial", chosen=True)


def chosen(task: str, step: int, prompt: str, score: float, parent: str = "") -> MemoryRecord:
    return MemoryRecord(
        task=task, step=step, prompt=prompt, score=score, kind="chosen", parent=parent, edit_distance=3,
        edit_budget=10, chosen=True,
    )


def candidate(task: str, step: int, prompt: str, score: float, *, picked: bool = False) -> MemoryRecord:
    return MemoryRecord(
        task=task, step=step, prompt=prompt, score=score, kind="candidate", parent="p", edit_distance=2,
        edit_budget=10, chosen=picked,
    )


PATH = [
    initial("nav", "Let's solve the problem.", 0.40),
    chosen("nav", 1, "Let's solve the problem step by step.", 0.55),
    chosen("nav", 2, "Think about each move and solve the problem step by step.", 0.50),
    chosen("nav", 3, "Track your position after every move.", 0.70),
    chosen("nav", 4, "Track your position and solve step by step.", 0.65),
]


def test_adding_the_same_records_twice_stores_them_once(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    store.add(PATH)
    store.add(PATH)
    store.add([PATH[1], PATH[1]])  # duplicates inside one batch, too

    assert store.count() == len(PATH)
    assert store.trajectory("nav") == [r.as_entry() for r in PATH]


def test_record_id_depends_on_task_step_kind_and_prompt_only() -> None:
    a = candidate("nav", 2, "Go.", 0.5)
    assert a.record_id == candidate("nav", 2, "Go.", 0.9, picked=True).record_id
    others = {
        candidate("nav", 3, "Go.", 0.5).record_id,
        candidate("dates", 2, "Go.", 0.5).record_id,
        candidate("nav", 2, "Go!", 0.5).record_id,
        chosen("nav", 2, "Go.", 0.5).record_id,
    }
    assert a.record_id not in others and len(others) == 4


def test_rescoring_a_record_overwrites_it(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    store.add([candidate("nav", 1, "Go.", 0.2)])
    store.add([candidate("nav", 1, "Go.", 0.8, picked=True)])

    assert store.candidates("nav") == [candidate("nav", 1, "Go.", 0.8, picked=True)]


def test_trajectory_is_in_step_order_and_leaves_out_candidates(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    shuffled = [PATH[3], candidate("nav", 1, "A candidate.", 0.9), PATH[0], PATH[4], PATH[2], PATH[1]]
    store.add(shuffled)

    assert [e.step for e in store.trajectory("nav")] == [0, 1, 2, 3, 4]
    assert store.trajectory("nav") == [
        TrajectoryEntry(prompt=r.prompt, score=r.score, step=r.step) for r in PATH
    ]
    assert store.trajectory("unknown-task") == []


def test_candidates_are_kept_per_task_and_step_with_all_fields(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    step1 = [candidate("nav", 1, "Go left.", 0.3), candidate("nav", 1, "Go right.", 0.6, picked=True)]
    step2 = [candidate("nav", 2, "Go up.", 0.5)]
    other_task = [candidate("dates", 1, "Count days.", 0.4)]
    store.add([*step2, *other_task, *step1, PATH[0]])

    assert store.candidates("nav", step=1) == [step1[1], step1[0]]  # best first within a step
    assert store.candidates("nav") == [step1[1], step1[0], *step2]
    assert store.candidates("nav", step=3) == []
    assert store.candidates("dates") == other_task


def test_last_step_tasks_and_count(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    assert (store.last_step("nav"), store.tasks(), store.count()) == (-1, [], 0)

    store.add([PATH[0]])
    assert store.last_step("nav") == 0
    store.add([*PATH[1:3], candidate("nav", 3, "Half-done step.", 0.9), initial("dates", "Count.", 0.1)])

    assert store.last_step("nav") == 2  # step 3 has candidates but nothing chosen yet
    assert store.last_step("dates") == 0
    assert store.tasks() == ["dates", "nav"]
    assert store.count() == 5


@pytest.mark.parametrize("strategy", ["recency", "importance", "relevance"])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_retrieve_hands_the_stored_trajectory_and_vectors_to_core_retrieval(
    chroma_path: Path, strategy: str, k: int
) -> None:
    store = open_store(chroma_path)
    store.add([*PATH, candidate("nav", 4, "Never on the trajectory.", 1.0), initial("dates", "Count.", 0.9)])

    expected = core_retrieve(
        [r.as_entry() for r in PATH], strategy=strategy, k=k, vectors=BagOfWordsEmbedder().embed([r.prompt for r in PATH])
    )
    assert store.retrieve("nav", strategy=strategy, k=k) == expected


@pytest.mark.parametrize("strategy", ["recency", "importance", "relevance"])
def test_retrieve_as_selected_hands_the_order_to_core_retrieval(chroma_path: Path, strategy: str) -> None:
    store = open_store(chroma_path)
    store.add(PATH)
    expected = core_retrieve(
        [r.as_entry() for r in PATH], strategy=strategy, k=3, order="as_selected",
        vectors=BagOfWordsEmbedder().embed([r.prompt for r in PATH]),
    )
    assert store.retrieve("nav", strategy=strategy, k=3, order="as_selected") == expected


def test_relevance_finds_the_older_prompt_nearest_the_newest_one(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    path = [
        initial("nav", "alpha beta gamma", 0.1),
        chosen("nav", 1, "delta epsilon zeta", 0.2),
        chosen("nav", 2, "eta theta iota", 0.3),
        chosen("nav", 3, "alpha beta gamma delta", 0.4),
    ]
    store.add(path)

    # Newest plus its nearest older neighbour by shared words (not the most recent, not the best).
    assert store.retrieve("nav", strategy="relevance", k=2) == [path[0].as_entry(), path[3].as_entry()]
    assert store.retrieve("nav", strategy="recency", k=2) == [path[2].as_entry(), path[3].as_entry()]


def test_retrieve_on_an_unknown_task_is_empty_and_bad_strategy_is_rejected(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    store.add(PATH)

    assert store.retrieve("unknown", strategy="relevance", k=3) == []
    with pytest.raises(ValueError, match="strategy"):
        store.retrieve("nav", strategy="random", k=3)


def test_each_distinct_prompt_is_embedded_once_per_add(chroma_path: Path) -> None:
    embedder = BagOfWordsEmbedder()
    store = open_store(chroma_path, embedder)
    store.add([PATH[1], candidate("nav", 1, PATH[1].prompt, PATH[1].score, picked=True)])

    assert embedder.calls == [[PATH[1].prompt]]
    assert store.count() == 2


def test_a_reopened_store_on_the_same_path_sees_everything(chroma_path: Path) -> None:
    records = [*PATH, candidate("nav", 2, "Go.", 0.3), initial("dates", "Count.", 0.2)]
    first = open_store(chroma_path)
    first.add(records)
    before = (first.trajectory("nav"), first.candidates("nav"), first.retrieve("nav", strategy="relevance", k=3))
    del first
    forget_open_clients()

    reopened = open_store(chroma_path)

    assert reopened.count() == len(records)
    assert reopened.tasks() == ["dates", "nav"]
    assert (
        reopened.trajectory("nav"), reopened.candidates("nav"), reopened.retrieve("nav", strategy="relevance", k=3)
    ) == before


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"score": 1.5}, "score"),
        ({"kind": "best"}, "kind"),
        ({"step": -1}, "step"),
        ({"task": ""}, "task"),
    ],
)
def test_invalid_records_are_rejected(kwargs: dict, message: str) -> None:
    fields = {"task": "nav", "step": 1, "prompt": "Go.", "score": 0.5, "kind": "candidate"} | kwargs
    with pytest.raises(ValueError, match=message):
        MemoryRecord(**fields)


def test_server_client_with_a_missing_token_names_the_variable_not_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPO_TEST_CHROMA_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="GPO_TEST_CHROMA_TOKEN"):
        open_chroma_client(path=None, host="127.0.0.1", port=8000, token_env="GPO_TEST_CHROMA_TOKEN")


def test_a_client_needs_a_path_or_a_host() -> None:
    with pytest.raises(ValueError, match="path"):
        open_chroma_client(path=None, host=None, port=8000, token_env=None)


def test_a_prompt_is_embedded_once_and_retrieval_after_adds_matches_a_fresh_read(chroma_path: Path) -> None:
    embedder = BagOfWordsEmbedder()
    store = open_store(chroma_path, embedder)
    store.add([PATH[0]])
    store.retrieve("nav", strategy="relevance", k=3)  # the task's trajectory is now held in memory
    for record in PATH[1:]:
        store.add([record, candidate("nav", record.step, record.prompt, record.score, picked=True)])
    # A step that keeps its prompt re-adds it: no second embedding.
    store.add([chosen("nav", len(PATH), PATH[-1].prompt, PATH[-1].score, parent=PATH[-1].prompt)])

    embedded = [p for call in embedder.calls for p in call]
    assert sorted(embedded) == sorted({r.prompt for r in PATH})
    held = store.retrieve("nav", strategy="relevance", k=3), store.trajectory("nav")
    del store
    forget_open_clients()
    fresh = open_store(chroma_path)
    assert (fresh.retrieve("nav", strategy="relevance", k=3), fresh.trajectory("nav")) == held


def test_a_steps_candidates_share_one_row_and_later_adds_merge_into_it(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    step1 = [candidate("nav", 1, f"Candidate {i}.", i / 10) for i in range(4)]
    store.add([PATH[1], *step1])
    assert store._collection.count() == 2, "the chosen prompt's row and one row for the step's candidates"
    assert store.count() == 5

    del store
    forget_open_clients()
    reopened = open_store(chroma_path)  # the merge must read the row, not only remember what it wrote
    reopened.add([candidate("nav", 1, "Candidate 1.", 0.9, picked=True), candidate("nav", 1, "A late one.", 0.3)])
    assert reopened.count() == 6
    assert [(c.prompt, c.score, c.chosen) for c in reopened.candidates("nav", step=1)] == [
        ("Candidate 1.", 0.9, True), ("A late one.", 0.3, False), ("Candidate 3.", 0.3, False),
        ("Candidate 2.", 0.2, False), ("Candidate 0.", 0.0, False)]


def test_single_candidate_rows_of_older_runs_still_read(chroma_path: Path) -> None:
    store = open_store(chroma_path)
    old = candidate("nav", 2, "Written one row per candidate.", 0.4)
    store._collection.upsert(ids=[old.record_id], embeddings=[[1.0] + [0.0] * 63], documents=[old.prompt],
                             metadatas=[old.metadata()])  # as gpo-ray wrote candidates before packs
    store.add([candidate("nav", 2, "A packed one.", 0.6)])

    assert store.candidates("nav", step=2) == [candidate("nav", 2, "A packed one.", 0.6), old]
    assert store.count() == 2 and store.tasks() == ["nav"]


# --- write-behind: stage, flush, and the pending log a killed writer leaves -------------------------------------


class UpsertCountingClient:
    """A chromadb client whose collections count their upserts (one flush must be one upsert)."""

    def __init__(self, client) -> None:
        self._client = client
        self.upserts: list[int] = []  # rows per upsert

    def get_or_create_collection(self, **kwargs):
        collection = self._client.get_or_create_collection(**kwargs)
        upserts, upsert = self.upserts, collection.upsert

        def counted(**rows):
            upserts.append(len(rows["ids"]))
            return upsert(**rows)

        collection.upsert = counted
        return collection


STEPS = [  # two tasks; step 3's candidates come in two adds, so a pack grows after it was staged
    [*PATH[:2], candidate("nav", 1, "A candidate.", 0.3), candidate("nav", 1, "Another one.", 0.5)],
    [PATH[2], initial("dates", "Read the date.", 0.2), candidate("nav", 2, "Go.", 0.45)],
    [PATH[3], candidate("nav", 3, "Track your position after every move.", 0.7, picked=True)],
    [candidate("nav", 3, "Count the moves.", 0.6), chosen("dates", 1, "Read the date twice.", 0.4)],
    [PATH[4], candidate("nav", 4, "Track your position and solve step by step.", 0.65, picked=True)],
]


def view(store: TrajectoryStore) -> tuple:
    """What a reader of the store sees, every read method."""
    return (
        store.count(), store.tasks(),
        {t: (store.trajectory(t), store.last_step(t), store.candidates(t), store.candidates(t, 3),
             store.retrieve(t, strategy="relevance", k=2), store.retrieve(t, strategy="importance", k=2))
         for t in ("nav", "dates")},
    )


def written_synchronously(path: Path) -> tuple:
    store = open_store(path)
    for records in STEPS:
        store.add(records)
    seen = view(store)
    forget_open_clients()
    return seen


def stored_in_chroma(path: Path) -> int:
    """Rows Chroma itself holds (no store in between, and no replay of the pending log)."""
    import chromadb
    from chromadb.config import Settings

    client = chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))
    return sum(c.count() for c in client.list_collections())


def test_staged_records_are_read_at_once_and_one_flush_writes_them_in_one_upsert(tmp_path: Path) -> None:
    expected = written_synchronously(tmp_path / "sync")
    path = tmp_path / "chroma"
    client = UpsertCountingClient(open_chroma_client(path=path, host=None, port=8000, token_env=None))
    store = TrajectoryStore(client=client, embedder=BagOfWordsEmbedder(), pending_log=PendingLog(path / PENDING_LOG))
    for records in STEPS:
        store.stage(records)

    assert view(store) == expected  # every read sees the staged records ...
    assert client.upserts == [] and stored_in_chroma(path) == 0  # ... and none is in Chroma yet
    assert (path / PENDING_LOG).read_text().count("\n") == len(STEPS)  # one line per stage

    assert store.flush() == store.flush() + 11  # 7 trajectory rows + 4 packs, then nothing left to write
    assert client.upserts == [11]
    assert (path / PENDING_LOG).read_text() == ""
    assert view(store) == expected
    forget_open_clients()
    assert view(open_store(path)) == expected


def test_a_killed_writers_pending_log_is_replayed_by_the_next_opener(tmp_path: Path) -> None:
    expected = written_synchronously(tmp_path / "sync")
    path = tmp_path / "chroma"
    writer = TrajectoryStore(client=open_chroma_client(path=path, host=None, port=8000, token_env=None),
                             embedder=BagOfWordsEmbedder(), pending_log=PendingLog(path / PENDING_LOG))
    for records in STEPS:
        writer.stage(records)
    del writer  # killed before any flush: only the log holds the records
    forget_open_clients()

    reader = TrajectoryStore(client=open_chroma_client(path=path, host=None, port=8000, token_env=None),
                             embedder=None)  # a reader with no log of its own (tests, reports) still sees them
    assert view(reader) == expected
    assert (path / PENDING_LOG).read_text() == "", "replayed once, then emptied"
    assert stored_in_chroma(path) == 11


def test_a_torn_last_line_of_the_pending_log_is_skipped_with_a_warning(tmp_path: Path) -> None:
    from structlog.testing import capture_logs

    path = tmp_path / "chroma"
    writer = TrajectoryStore(client=open_chroma_client(path=path, host=None, port=8000, token_env=None),
                             embedder=BagOfWordsEmbedder(), pending_log=PendingLog(path / PENDING_LOG))
    writer.stage(PATH[:2])
    writer.stage(PATH[2:])
    del writer
    forget_open_clients()
    log_file = path / PENDING_LOG
    lines = log_file.read_text().splitlines(keepends=True)
    log_file.write_text(lines[0] + lines[1][: len(lines[1]) // 2])  # the second write cut short by the kill

    with capture_logs() as logs:
        store = open_store(path)

    assert store.trajectory("nav") == [r.as_entry() for r in PATH[:2]]
    skipped = [e for e in logs if e["event"] == "memory_pending_line_skipped"]
    assert len(skipped) == 1 and skipped[0]["torn_last_line"] and skipped[0]["log_level"] == "warning"
    assert log_file.read_text() == ""
