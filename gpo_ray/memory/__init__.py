"""Trajectory memory: the prompts a task's optimization has chosen and scored, kept in Chroma."""

from gpo_ray.memory.store import MemoryRecord, TrajectoryStore, open_chroma_client

__all__ = ["MemoryRecord", "TrajectoryStore", "open_chroma_client"]
