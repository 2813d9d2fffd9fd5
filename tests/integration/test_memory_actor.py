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


CHROMA = Path(sys.executable).parent / "chroma"


class ChromaServer:
    """`chroma run` of this venv on a free port, stopped and started again on the same port and data."""

    def __init__(self, path: Path) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.path, self.proc = path, None

    def start(self) -> None:
        import subprocess
        import time
        import urllib.request

        self.proc = subprocess.Popen([str(CHROMA), "run", "--path", str(self.path), "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120  # a guard, not a timing assumption
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v2/heartbeat", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("chroma run did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


@pytest.mark.skipif(not CHROMA.exists(), reason="the chroma command (chromadb's server) is not installed")
def test_a_restarted_chroma_server_is_waited_for_and_nothing_is_lost(ray_cluster, tmp_path: Path) -> None:
    import time

    server = ChromaServer(tmp_path / "chroma-server")
    server.start()
    try:
        memory = start_trajectory_memory(
            run_dir=tmp_path / "run", cluster=ClusterSettings(chroma_host="127.0.0.1", chroma_port=server.port),
            embedder_factory=functools.partial(embedder_logging_starts, str(tmp_path / "starts.txt")),
            collection_name="restarted-server")
        ray.get(memory.add.remote(PATH[:2]), timeout=120)
        pid = ray.get(memory.pid.remote(), timeout=60)
        logs = Path(ray._private.worker.global_worker.node.get_session_dir_path()) / "logs"
        server.stop()
        pending = memory.add.remote(PATH[2:])  # while the server is down

        def retried() -> bool:
            return any("chroma_server_unreachable_retrying" in f.read_text() for f in logs.glob(f"worker-*-{pid}.out"))

        deadline = time.monotonic() + 120  # a guard: the call must have failed once before the server comes back
        while not retried():
            assert time.monotonic() < deadline, "the memory actor did not log a retry"
            time.sleep(0.1)
        server.start()
        ray.get(pending, timeout=120)
        assert ray.get(memory.trajectory.remote("nav"), timeout=60) == ENTRIES
        ray.kill(memory)
    finally:
        server.stop()
