"""The trajectory memory split over several stores ("shards"), each task in exactly one of them.

A task's shard is a stable hash of its name (sha256, not Python's per-process `hash`), so the driver, every
restarted actor and every resume agree on it. Each shard is its own Chroma store with one writer (its actor):
embedded, its own persistent directory (only one process may own a directory); with a Chroma server, its own
collection. The shard count of a run is fixed when the run is created and recorded in RUN_DIR/memory.json: a resume
uses the recorded count, whatever the config says, so it finds every task's memory where it was. A run directory
made before sharding existed has no memory.json and one store at RUN_DIR/chroma: it is read as one shard.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import structlog

from gpo_ray.atomic import write_text_atomic
from gpo_ray.errors import InputError

log = structlog.get_logger()

LAYOUT_FILE = "memory.json"
LAYOUT_VERSION = 1
# One shard serves a few hundred tasks (a step costs it milliseconds; real steps take seconds); each further shard
# is one more process with its own Chroma and embedder (about 400 MB), so the default grows slowly and stops at 4.
TASKS_PER_SHARD = 500
MAX_DEFAULT_SHARDS = 4
MAX_SHARDS = 64


def shard_of(task: str, shards: int) -> int:
    """The shard (0..shards-1) that holds `task`'s memory: the same for the same name in any process."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    digest = hashlib.sha256(task.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % shards


def default_shards(tasks: int) -> int:
    """Shards for a run of `tasks` tasks when the config does not say: one per TASKS_PER_SHARD, at most 4."""
    return max(1, min(MAX_DEFAULT_SHARDS, math.ceil(tasks / TASKS_PER_SHARD)))


@dataclass(frozen=True)
class MemoryLayout:
    """How many shards a run's memory has, and where each one lives."""

    shards: int
    run_id: str

    def collection(self, shard: int) -> str:
        """Its Chroma collection: one per run (runs sharing a Chroma server never see each other's), one per shard."""
        base = f"gpo-run-{self.run_id}"
        return base if self.shards == 1 else f"{base}-shard-{shard}"

    def chroma_dir(self, root: Path, shard: int) -> Path:
        """Its embedded store under RUN_DIR/chroma: the folder itself for one shard (the layout before sharding),
        else RUN_DIR/chroma/shard-K."""
        return root if self.shards == 1 else root / f"shard-{shard}"


def load_or_create_layout(run_path: Path, *, run_id: str, wanted: int | None, tasks: int) -> MemoryLayout:
    """The run's recorded layout; on the first start, `wanted` shards (None: `default_shards(tasks)`), recorded.

    A run directory with a store but no record was made before sharding: one shard, recorded as such."""
    path = Path(run_path) / LAYOUT_FILE
    if path.is_file():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            shards = int(data["shards"])
            if not 1 <= shards <= MAX_SHARDS:
                raise ValueError(shards)
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"{path} is damaged: it must say how many memory shards the run has "
                             f"(1 to {MAX_SHARDS})") from None
        if wanted is not None and wanted != shards:
            log.warning("memory_shards_fixed", recorded=shards, configured=wanted,
                        why="a run keeps the shard count it was created with, so every task's memory is found")
        return MemoryLayout(shards=shards, run_id=run_id)
    legacy = (Path(run_path) / "chroma").is_dir()
    shards = 1 if legacy else (wanted or default_shards(tasks))
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"version": LAYOUT_VERSION, "shards": shards, "hash": "sha256(task) mod shards"}
    write_text_atomic(path, json.dumps(record))
    log.info("memory_layout_created", shards=shards, legacy_store=legacy)
    return MemoryLayout(shards=shards, run_id=run_id)
