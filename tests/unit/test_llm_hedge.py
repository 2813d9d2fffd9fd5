"""Hedged requests: a call slower than recent ones gets a second request, the first answer wins, the loser is
cancelled, and all of it is counted; never before enough latencies are known, nor beyond the extra-request budget.
The scripted endpoint below holds chosen requests forever, so no test depends on timing."""

from __future__ import annotations

import asyncio

import pytest

from gpo_ray.config import LLMRoleConfig, RunConfig
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.errors import RetryableLLMError
from gpo_ray.llm.hedge import HedgedClient, percentile
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, user_message


class Endpoint:
    """Answers at once, except the requests numbered in `hold` (held until cancelled) or `fail` (an error)."""

    def __init__(self, *, hold: set[int] = frozenset(), fail: set[int] = frozenset()) -> None:
        self.hold, self.fail = hold, fail
        self.sent = 0
        self.cancelled: list[int] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.sent += 1
        number = self.sent
        if number in self.fail:
            raise RetryableLLMError(f"request {number} failed")
        if number in self.hold:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled.append(number)
                raise
        return ChatResponse(text=f"answer {number}")


def ask(text: str = "q") -> ChatRequest:
    return ChatRequest(messages=user_message(text))


async def warmed(endpoint: Endpoint, counters: UsageCounters, n: int = 20, **kw) -> HedgedClient:
    client = HedgedClient(endpoint, counters=counters, min_samples=n, min_delay_s=0.0, **kw)
    for _ in range(n):
        await client.complete(ask())
    return client


def test_percentile_is_nearest_rank():
    assert percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert percentile([3.0], 99) == 3.0


async def test_a_held_request_is_hedged_the_hedge_wins_and_the_loser_is_cancelled():
    endpoint, counters = Endpoint(hold={21}), UsageCounters()
    client = await warmed(endpoint, counters)
    response = await client.complete(ask())
    assert response.text == "answer 22", "the hedge's answer"
    assert endpoint.cancelled == [21], "the held request was cancelled, not left holding a slot"
    assert counters.hedges == {"sent": 1, "won": 1, "cancelled": 1}


async def test_no_hedge_before_enough_latencies_are_known():
    endpoint, counters = Endpoint(hold={1}), UsageCounters()
    client = HedgedClient(endpoint, counters=counters, min_samples=5, min_delay_s=0.0)
    call = asyncio.ensure_future(client.complete(ask()))
    await asyncio.sleep(0.05)
    assert endpoint.sent == 1 and not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert endpoint.cancelled == [1] and counters.hedges == {}


async def test_hedges_stay_within_the_extra_request_budget():
    endpoint, counters = Endpoint(hold={21, 23}), UsageCounters()
    client = await warmed(endpoint, counters, max_extra_fraction=0.05)  # one hedge per 20 calls
    assert (await client.complete(ask())).text == "answer 22"  # call 21: hedged
    call = asyncio.ensure_future(client.complete(ask()))  # call 22: over budget, waits for its one request
    await asyncio.sleep(0.05)
    assert endpoint.sent == 23 and not call.done()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert counters.hedges == {"sent": 1, "won": 1, "cancelled": 1}


async def test_a_failed_hedge_leaves_the_first_request_racing():
    endpoint, counters = Endpoint(), UsageCounters()
    client = await warmed(endpoint, counters)
    endpoint.hold = {21}
    endpoint.fail = {22}
    call = asyncio.ensure_future(client.complete(ask()))
    # The hedge (22) fails; the held primary (21) is still the call's chance, so the call goes on waiting.
    await asyncio.sleep(0.05)
    assert not call.done() and counters.hedges == {"sent": 1}
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert endpoint.cancelled == [21]


async def test_both_failing_raises_the_error():
    class Slow(Endpoint):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            self.sent += 1
            if self.sent > 20:
                await asyncio.sleep(0.05 if self.sent == 21 else 0)
                raise RetryableLLMError(f"request {self.sent} failed")
            return ChatResponse(text="ok")

    client = await warmed(Slow(), UsageCounters())
    with pytest.raises(RetryableLLMError, match="failed"):
        await client.complete(ask())


def test_hedging_is_off_by_default_and_outside_the_fingerprint():
    assert LLMRoleConfig().hedge.enabled is False
    base = RunConfig(tasks=["x"]).fingerprint()
    how = {"hedge": {"enabled": True, "percentile": 99}, "read_timeout_s": 2.0, "max_reply_bytes": 10_000,
           "transport": "openai"}
    roles = {"task_model": {"temperature": 0.0, "max_tokens": 256}, "optimizer_model": {"temperature": 1.0, "max_tokens": 256}}
    assert RunConfig(tasks=["x"], **roles).fingerprint() == base
    assert RunConfig(tasks=["x"], **{role: v | how for role, v in roles.items()}).fingerprint() == base
    assert RunConfig(tasks=["x"], task_model=roles["task_model"] | {"max_tokens": 17}).fingerprint() != base
