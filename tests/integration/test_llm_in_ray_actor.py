"""The client stack built inside Ray actors: two actors share one on-disk cache passed by pickling."""

from __future__ import annotations

import asyncio
import sys

import pytest

from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.testing import running_fake_llm

pytestmark = pytest.mark.ray


class _Caller:
    """A minimal actor holding one client stack, as the refiners and evaluators do."""

    def __init__(self, role: LLMRoleConfig, base_url: str, cache: ResponseCache) -> None:
        from gpo_ray.llm.stack import build_client

        self.counters = UsageCounters()
        self.client = build_client(
            role, role_name="task", base_url=base_url, model="m", cache=cache, counters=self.counters
        )

    async def ask(self, questions: list[str]) -> tuple[list[str], dict]:
        from gpo_ray.llm.protocol import ChatRequest, user_message

        requests = [ChatRequest(messages=user_message(q)) for q in questions]
        replies = await asyncio.gather(*(self.client.complete(r) for r in requests))
        return [r.text for r in replies], self.counters.snapshot()


async def test_actors_share_the_cache_and_count_what_they_sent(ray_cluster, tmp_path):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # test modules are not importable by workers
    caller = ray_cluster.remote(num_cpus=0.1)(_Caller)
    async with running_fake_llm() as server:
        role = LLMRoleConfig(base_url=server.base_url, max_in_flight=2)
        cache = ResponseCache(tmp_path)
        first = caller.remote(role, server.base_url, cache)
        second = caller.remote(role, server.base_url, cache)
        questions = [f"What is {i} + 1?" for i in range(6)]
        replies_1, usage_1 = await first.ask.remote(questions)
        replies_2, usage_2 = await second.ask.remote(questions + ["What is 10 + 1?"])
        for actor in (first, second):
            ray_cluster.kill(actor)
    assert replies_2[:6] == replies_1
    assert (usage_1["requests"], usage_2["requests"], usage_2["cache_hits"]) == (6, 1, 6)
    assert server.stats()["requests"] == 7
