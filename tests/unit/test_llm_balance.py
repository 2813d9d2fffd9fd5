"""Several endpoints of one role, balanced by load."""

import asyncio

from gpo_ray.llm.balance import BalancedClient
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, user_message


class SlowEndpoint:
    def __init__(self, delay: float):
        self.delay = delay
        self.served = 0
        self.in_flight = 0
        self.peak = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        self.served += 1
        return ChatResponse(f"{id(self)}")


async def test_requests_spread_evenly_over_equal_endpoints():
    a, b = SlowEndpoint(0.01), SlowEndpoint(0.01)
    client = BalancedClient([a, b])
    await asyncio.gather(*(client.complete(ChatRequest(user_message(str(i)))) for i in range(40)))
    assert a.served == b.served == 20
    assert a.peak == b.peak == 20


async def test_a_slow_endpoint_gets_less_work_when_requests_trickle_in():
    fast, slow = SlowEndpoint(0.001), SlowEndpoint(0.05)
    client = BalancedClient([slow, fast])

    async def user(i):
        for _ in range(10):
            await client.complete(ChatRequest(user_message(str(i))))

    await asyncio.gather(*(user(i) for i in range(3)))
    assert fast.served > slow.served
