"""RateLimiter: the one actor of a run that holds every endpoint's requests/tokens-per-minute bucket.

A thin shell over `Limiter` (gpo_ray/llm/run_limits.py, where the arithmetic and why the limit holds are).
It is named per run (`gpo-limiter-<run id>`), takes no CPU slot, and Ray restarts it when it dies; a restarted
limiter starts with empty buckets, which keeps the limit (see run_limits). The clients reach it through a
`LimiterClient`, which finds it by name and, when a call fails because it died, waits and asks again: a run
waits out a limiter restart instead of failing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray
import structlog

from gpo_ray.actors.introspection import WhereAmI
from gpo_ray.actors.memory import MEMORY_NAMESPACE
from gpo_ray.llm.run_limits import LeaseGrant, Limiter
from gpo_ray.vocabulary import NodeResource

log = structlog.get_logger()


class RateLimiter(WhereAmI):
    """The actor shell over `Limiter`: buckets made on first use, lease calls of one endpoint first come, first
    served."""

    def __init__(self) -> None:
        self._limiter = Limiter()
        log.info("rate_limiter_ready")

    async def lease(self, key: str, **request: Any) -> LeaseGrant:
        return await self._limiter.lease(key, **request)

    async def granted(self) -> dict[str, dict[str, float]]:
        return self._limiter.granted()


RateLimiterActor = ray.remote(RateLimiter)

# Ray errors that mean "the limiter is not there right now" (dead or restarting).
_UNAVAILABLE: tuple[type[BaseException], ...] = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)


class LimiterClient:
    """A `PermitSource` for the clients in an actor: the run's limiter, found by name. Picklable (name only).

    When the limiter is unavailable, the call is asked again after a short wait (growing to 1 s), forever: the
    limiter is restarted by Ray, and a request waiting for a permit is better than a request sent past the limit.
    """

    def __init__(self, name: str, *, namespace: str = MEMORY_NAMESPACE) -> None:
        self.name = name
        self.namespace = namespace
        self._handle: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {"name": self.name, "namespace": self.namespace, "_handle": None}

    async def lease(self, key: str, **request: Any) -> LeaseGrant:
        delay = 0.05
        while True:
            error = await self._try_lease(key, request)
            if isinstance(error, LeaseGrant):
                return error
            log.warning("rate_limiter_unavailable", limiter=self.name, error=error, retry_in_s=round(delay, 2))
            self._handle = None
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    async def _try_lease(self, key: str, request: dict[str, Any]) -> LeaseGrant | str:
        """The grant, or why the limiter could not be asked."""
        if self._handle is None:
            try:
                self._handle = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError:
                return "no actor of that name"
        try:
            return await self._handle.lease.remote(key, **request)
        except _UNAVAILABLE as e:
            return type(e).__name__


def limiter_name(run_id: str) -> str:
    return f"gpo-limiter-{run_id}"


def start_rate_limiter(name: str) -> Any:
    """Start the run's limiter (or return the live one of that name): beside the controller on a cluster with a
    head resource, anywhere otherwise."""
    options: dict[str, Any] = {"num_cpus": 0, "max_restarts": -1, "max_task_retries": 0, "name": name,
                               "namespace": MEMORY_NAMESPACE, "get_if_exists": True}
    if NodeResource.HEAD in ray.cluster_resources():
        options["resources"] = {str(NodeResource.HEAD): 0.01}
    handle = RateLimiterActor.options(**options).remote()
    log.info("rate_limiter_started", name=name)
    return handle
