"""The memory actor's class run in-process (no Ray): an add is acknowledged once it is in the pending log and
readable, and Chroma gets the staged rows after the flush interval, or at once when enough are staged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import gpo_ray.actors.memory as memory_module
from gpo_ray.actors.memory import TrajectoryMemory
from gpo_ray.memory.store import PENDING_LOG
from tests.unit.test_memory_store import (
    PATH,
    BagOfWordsEmbedder,
    forget_open_clients,
    stored_in_chroma,
)


@pytest.fixture
def chroma_path(tmp_path: Path):
    yield tmp_path / "chroma"
    forget_open_clients()


def memory_actor(path: Path, *, flush_interval_s: float) -> TrajectoryMemory:
    return TrajectoryMemory(chroma_path=str(path), chroma_host=None, chroma_port=8000, chroma_token_env=None,
                            embedder_factory=BagOfWordsEmbedder, flush_interval_s=flush_interval_s)


async def until(predicate, what: str) -> None:
    for _ in range(3000):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def test_an_add_is_acknowledged_from_the_log_and_flushed_after_the_interval(chroma_path: Path) -> None:
    async def scenario():
        memory = memory_actor(chroma_path, flush_interval_s=0.3)
        await asyncio.gather(memory.add(PATH[:2]), memory.add(PATH[2:3]))  # group commit: one stage, one line
        acknowledged = ((chroma_path / PENDING_LOG).read_text().count("\n"), stored_in_chroma(chroma_path),
                        await memory.trajectory("nav"), await memory.write_stats())
        async def flushed() -> bool:
            return (await memory.write_stats())["writes"] == 1

        await until(flushed, "the flush after the interval")
        return acknowledged, (chroma_path / PENDING_LOG).read_text(), stored_in_chroma(chroma_path)

    acknowledged, log_after, in_chroma = asyncio.run(scenario())
    assert acknowledged == (1, 0, [r.as_entry() for r in PATH[:3]], {"writes": 0, "adds": 2})
    assert log_after == "" and in_chroma == 3


def test_enough_staged_rows_are_flushed_without_waiting(chroma_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(memory_module, "FLUSH_ROWS", 4)

    async def scenario():
        memory = memory_actor(chroma_path, flush_interval_s=3600)
        await memory.add(PATH[:2])
        staged = stored_in_chroma(chroma_path)
        await memory.add(PATH[2:4])
        await memory.count()  # queued after the add, so after the flush it started
        return staged, stored_in_chroma(chroma_path), await memory.write_stats()

    assert asyncio.run(scenario()) == (0, 4, {"writes": 1, "adds": 2})
    assert (chroma_path / PENDING_LOG).read_text() == ""


def test_with_no_interval_every_add_is_written_at_once(chroma_path: Path) -> None:
    async def scenario():
        memory = memory_actor(chroma_path, flush_interval_s=0)
        await memory.add(PATH[:2])
        return stored_in_chroma(chroma_path), await memory.write_stats()

    assert asyncio.run(scenario()) == (2, {"writes": 1, "adds": 1})
    assert not (chroma_path / PENDING_LOG).exists()
