"""What the fault tests share.

- Two fake endpoints (`gpo_ray.testing.ThreadedFake`), one per role, each on its own event loop in a
  thread: pausing the optimizer's holds only generation, pausing the task model's holds only scoring,
  so a test knows exactly which work is in flight when it strikes (no sleeping and hoping).
- A run on a background thread, with the actor handles it started (from `on_actors_started`), so a
  test can kill an actor while the run goes on.
- One small run configuration, and the checks that compare a disturbed run with an undisturbed one.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpo_ray.api import RunActors
from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.core.results import StepResult, TaskResult
from gpo_ray.runtime.run_dir import task_file_name
from gpo_ray.tasks.registry import resolve_tasks
from gpo_ray.testing import FakeLLMConfig, ThreadedFake, answer_key_from_examples
from gpo_ray.testing.host import WAIT_S

TASK = "example/arithmetic"  # 8 train / 8 eval / 8 test examples
CANDIDATES = 3  # optimizer requests per step
EVALUATOR_SLOTS = 4  # requests one evaluator has in flight at most
NUM_EVALUATORS = 2
BATCH_SIZE = 4
TOTAL_STEPS = 4  # 8 training examples in batches of 4, two epochs


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], bool], *, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def fake_llm_config(**overrides: Any) -> FakeLLMConfig:
    """The scripted endpoint for TASK: better prompts (with the skill phrases) answer more questions."""
    (task,) = resolve_tasks([TASK], data_dir=None)
    settings: dict[str, Any] = dict(
        base_accuracy=0.3,
        skill_phrases={"step by step": 0.35, "carefully": 0.25},
        answer_key=answer_key_from_examples([*task.train, *task.eval, *task.test]),
        optimizer_phrases=["Think step by step.", "Work carefully.", "Be concise.", "Show your work."],
    )
    settings.update(overrides)
    return FakeLLMConfig(**settings)


def run_config(run_dir: Path, *, optimizer_url: str, task_url: str, **role: Any) -> RunConfig:
    """One task, four steps, three candidates, two refiners and two evaluators with four slots each."""
    settings: dict[str, Any] = {"max_tokens": 64, "timeout_s": 60} | role
    base = LLMRoleConfig(base_url=task_url, model="fake-llm", **settings)
    return RunConfig(
        tasks=[TASK],
        task_model=base,
        optimizer_model=base.model_copy(update={"base_url": optimizer_url, "temperature": 1.0}),
        optimizer=dict(epochs=2, batch_size=BATCH_SIZE, candidates=CANDIDATES, initial_prompt="Answer the question.",
                       seed=7, schedule={"initial": 12, "final": 4}),
        cluster={"num_refiners": 2, "num_evaluators": NUM_EVALUATORS, "evaluator_max_in_flight": EVALUATOR_SLOTS},
        run_dir=run_dir,
    )


class FaultFake(ThreadedFake):
    """The threaded fake, by default scripted for TASK, that can hold a step's generation."""

    def __init__(self, config: FakeLLMConfig | None = None, *, port: int = 0) -> None:
        super().__init__(config or fake_llm_config(), port=port)

    def hold_generation(self, step: int) -> None:
        """With this (the optimizer's) fake paused: let steps before `step` generate, one at a time, and return
        once all of step `step`'s candidate requests are held.

        Steps run one after another, so step t's requests are arrivals (t-1)*C+1 .. t*C, and while they are
        held every earlier step is scored and checkpointed.
        """
        for t in range(1, step + 1):
            wait_until(lambda t=t: (s := self.stats())["requests"] >= t * CANDIDATES and s["in_service"] >= CANDIDATES,
                       what=f"step {t}'s generation to be held")
            if t < step:
                self.release()


@contextlib.contextmanager
def two_fakes(optimizer: FakeLLMConfig | None = None, task: FakeLLMConfig | None = None, *,
              task_port: int = 0) -> Iterator[tuple[FaultFake, FaultFake]]:
    with FaultFake(optimizer) as opt, FaultFake(task, port=task_port) as task_fake:
        yield opt, task_fake


@dataclass
class StartedActors:
    """The run's actor handles, handed over by `optimize(..., on_actors_started=actors.started)`."""

    ready: threading.Event = field(default_factory=threading.Event)
    memory: Any = None
    refiners: list[Any] = field(default_factory=list)
    evaluators: list[Any] = field(default_factory=list)
    limiter: Any = None
    memory_shards: list[Any] = field(default_factory=list)

    def started(self, actors: RunActors) -> None:
        self.memory, self.refiners, self.evaluators = actors.memory, list(actors.refiners), list(actors.evaluators)
        self.limiter = actors.limiter
        self.memory_shards = list(actors.memory_shards)
        self.ready.set()

    def wait(self) -> StartedActors:
        assert self.ready.wait(WAIT_S), "the run did not start its actors"
        return self


class BackgroundRun:
    """Runs `fn` on a thread; `join()` returns its result or raises its exception."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self._result: Any = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self._result = fn()
            except BaseException as e:  # noqa: BLE001 - handed to join()
                self._error = e

        self.thread = threading.Thread(target=target, name="gpo-run", daemon=True)
        self.thread.start()

    def done(self) -> bool:
        return not self.thread.is_alive()

    def join(self, timeout: float = 300.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the run did not finish"
        if self._error is not None:
            raise self._error
        return self._result


# --- checks -----------------------------------------------------------------------------------


def checkpoint_steps(run_dir: Path, task: str = TASK) -> list[int]:
    path = run_dir / "checkpoints" / task_file_name(task)
    if not path.exists():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


def memory_contents(chroma_dir: Path | None, *, client: Any = None, collection: str | None = None) -> dict[str, Any]:
    """What a run left in its trajectory store: the trajectory and every scored candidate, per task. From `collection`
    through `client` (a Chroma server), or from the run's embedded store over all its memory shards
    (RUN_DIR/memory.json). A task found in two shards, or in a shard its name does not hash to, fails: a resume
    must find every task's memory where it was."""
    from gpo_ray.memory.sharding import LAYOUT_FILE, shard_of
    from gpo_ray.memory.store import TrajectoryStore, open_chroma_client

    def read(store: TrajectoryStore) -> dict[str, Any]:
        return {task: {"trajectory": store.trajectory(task),
                       "candidates": sorted((c.step, c.prompt, c.score) for c in store.candidates(task))}
                for task in store.tasks()}

    if client is not None:
        store = TrajectoryStore(client=client, embedder=None, collection_name=collection)
        return read(store) | {"count": store.count()}
    assert chroma_dir is not None
    layout = chroma_dir.parent / LAYOUT_FILE
    shards = json.loads(layout.read_text())["shards"] if layout.is_file() else 1
    contents: dict[str, Any] = {}
    count = 0
    for k in range(shards):
        shard_client = open_chroma_client(path=chroma_dir if shards == 1 else chroma_dir / f"shard-{k}", host=None,
                                          port=0, token_env=None)
        names = [c.name for c in shard_client.list_collections()]
        assert len(names) <= 1, f"shard {k} holds {len(names)} collections"
        if not names:  # a shard whose actor had stored nothing yet (a driver killed during the warm start)
            continue
        store = TrajectoryStore(client=shard_client, embedder=None, collection_name=names[0])
        for task, content in read(store).items():
            assert task not in contents, f"{task} is in two memory shards"
            assert shard_of(task, shards) == k, f"{task} is in shard {k}, its name hashes to {shard_of(task, shards)}"
            contents[task] = content
        count += store.count()
    from chromadb.api.client import SharedSystemClient

    SharedSystemClient.clear_system_cache()  # Chroma keeps one system per path: a later read must really reopen
    return contents | {"count": count}


def json_tasks(run_dir: Path) -> dict[str, TaskResult]:
    """The task results as results.json reports them (for runs driven through the CLI)."""
    doc = json.loads((run_dir / "results.json").read_text())
    return {
        name: TaskResult(task=name, **{k: v for k, v in entry.items() if k != "steps"},
                         steps=tuple(StepResult.from_dict(s) for s in entry["steps"]))
        for name, entry in doc["tasks"].items()
    }


def assert_same_as_undisturbed(run_dir: Path, tasks: dict[str, TaskResult], undisturbed: dict[str, TaskResult]) -> None:
    """Same chosen prompts and scores as the undisturbed run, each step checkpointed exactly once."""
    assert tasks == undisturbed
    for name, result in undisturbed.items():
        assert checkpoint_steps(run_dir, name) == list(range(len(result.steps) + 1)), "every step recorded once"
    doc = json.loads((run_dir / "results.json").read_text())
    assert doc["status"] == "completed"
    for name, result in undisturbed.items():
        assert doc["tasks"][name]["best_prompt"] == result.best_prompt
