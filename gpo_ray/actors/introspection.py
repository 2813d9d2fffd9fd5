"""Where an actor runs: what placement checks and fault tests ask every actor."""

from __future__ import annotations

import os

import ray


class WhereAmI:
    """Mixin for actor classes: the Ray node and the worker process they live in."""

    async def node_id(self) -> str:
        return ray.get_runtime_context().get_node_id()

    async def pid(self) -> int:
        return os.getpid()
