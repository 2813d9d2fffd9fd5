"""TrajectoryMemory on the shared local Ray cluster: the store behind an actor, surviving a crash."""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import ray
from ray import cloudpickle

from gpo_ray.actors.memory import MEMORY_NAMESPACE, start_trajectory_memory
from gpo_ray.config import ClusterSettings
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.memory import MemoryRecord

pytestmark = pytest.mark.ray

# The embedder factory below runs inside the actor's worker, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


class BagOfWordsEmbedder:
    """Deterministic: each lower-cased word hashed into one of 64 dims, then L2-normalised."""

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        out = []
        for text in texts:
            v = [0.0] * 64
            for word in re.findall(r"\w+", text.lower()):
                v[int(hashlib.sha256(word.encode()).hexdigest(), 16) % 64] += 1.0
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            out.append([x / norm for x in v])
        return out


def embedder_logging_starts(starts_file: str) -> BagOfWordsEmbedder:
    """Appends the actor process's pid to starts_file each time an actor instance is built."""
    with open(starts_file, "a", encoding="utf-8") as f:
        f.write(f"{os.getpid()}\n")
    return BagOfWordsEmbedder()


def started_pids(starts_file: Path) -> list[str]:
    return starts_file.read_text(encoding="utf-8").split()


PATH = [
    MemoryRecord(task="nav", step=0, prompt="alpha beta gamma", score=0.1, kind="initial", chosen=True),
    MemoryRecord(task="nav", step=1, prompt="delta epsilon zeta", score=0.2, kind="chosen", parent="alpha beta gamma",
                 edit_distance=3, edit_budget=10, chosen=True),
    MemoryRecord(task="nav", step=2, prompt="eta theta iota", score=0.3, kind="chosen", parent="delta epsilon zeta",
                 edit_distance=3, edit_budget=8, chosen=True),
    MemoryRecord(task="nav", step=3, prompt="alpha beta gamma delta", score=0.4, kind="chosen",
                 parent="eta theta iota", edit_distance=4, edit_budget=6, chosen=True),
]
CANDIDATES = [
    MemoryRecord(task="nav", step=3, prompt="alpha beta gamma delta", score=0.4, kind="candidate",
                 parent="eta theta iota", edit_distance=4, edit_budget=6, chosen=True),
    MemoryRecord(task="nav", step=3, prompt="kappa lambda", score=0.25, kind="candidate",
                 parent="eta theta iota", edit_distance=3, edit_budget=6),
]
ENTRIES = [TrajectoryEntry(prompt=r.prompt, score=r.score, step=r.step) for r in PATH]


def test_memory_actor_serves_the_store_and_survives_a_crash(ray_cluster, tmp_path: Path) -> None:
    starts_file = tmp_path / "starts.txt"
    memory = start_trajectory_memory(
        run_dir=tmp_path / "run",
        cluster=ClusterSettings(),
        embedder_factory=functools.partial(embedder_logging_starts, str(starts_file)),
    )

    ray.get(memory.add.remote(PATH))
    ray.get(memory.add.remote([*CANDIDATES, *PATH]))  # a retried write changes nothing

    def view() -> tuple:
        return tuple(
            ray.get(
                [
                    memory.count.remote(),
                    memory.tasks.remote(),
                    memory.trajectory.remote("nav"),
                    memory.last_step.remote("nav"),
                    memory.candidates.remote("nav", 3),
                    memory.retrieve.remote("nav", strategy="relevance", k=2),
                    memory.retrieve.remote("nav", strategy="importance", k=2),
                ]
            )
        )

    before = view()
    assert before == (
        len(PATH) + len(CANDIDATES),
        ["nav"],
        ENTRIES,
        3,
        CANDIDATES,
        [ENTRIES[0], ENTRIES[3]],
        [ENTRIES[2], ENTRIES[3]],
    )
    assert (tmp_path / "run" / "chroma").is_dir()
    assert ray.get(memory.node_id.remote()) == ray.get_runtime_context().get_node_id()
    assert len(started_pids(starts_file)) == 1

    ray.kill(memory, no_restart=False)

    assert view() == before  # the calls wait out the restart (max_task_retries) and see everything
    pids = started_pids(starts_file)
    assert len(pids) == 2 and pids[0] != pids[1], "the actor was not restarted in a new process"
    ray.kill(memory)


def test_a_named_memory_actor_is_found_again_by_name(ray_cluster, tmp_path: Path) -> None:
    factory = functools.partial(embedder_logging_starts, str(tmp_path / "starts.txt"))
    first = start_trajectory_memory(
        run_dir=tmp_path / "run", cluster=ClusterSettings(), name="memory-by-name", embedder_factory=factory
    )
    ray.get(first.add.remote(PATH[:1]))

    again = start_trajectory_memory(
        run_dir=tmp_path / "run", cluster=ClusterSettings(), name="memory-by-name", embedder_factory=factory
    )

    assert ray.get(again.trajectory.remote("nav")) == ENTRIES[:1]
    assert ray.get(ray.get_actor("memory-by-name", namespace=MEMORY_NAMESPACE).count.remote()) == 1
    ray.kill(first)
