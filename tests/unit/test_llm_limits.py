"""The limits layer: requests in flight, requests and tokens per minute."""

from __future__ import annotations

import asyncio

import pytest

from gpo_ray.llm.limits import LimitedClient, TokenBucket, estimate_tokens
from gpo_ray.llm.protocol import ChatRequest, Usage, user_message
from gpo_ray.llm.transport import HTTPTransport
from gpo_ray.testing import running_fake_llm
from tests.fakes import FakeClock, ScriptedClient


def ask(text: str = "hello", **kw) -> ChatRequest:
    return ChatRequest(messages=user_message(text), **kw)


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_never_more_than_max_in_flight_reach_the_inner_client():
    inner = ScriptedClient()
    inner.release.clear()
    client = LimitedClient(inner, max_in_flight=3)
    calls = [asyncio.create_task(client.complete(ask(f"q{i}"))) for i in range(10)]
    await _settle()
    assert inner.in_progress == 3  # three admitted, seven waiting for a slot
    inner.release.set()
    await asyncio.gather(*calls)
    assert inner.peak_in_progress == 3 and len(inner.requests) == 10


async def test_a_failed_call_frees_its_slot():
    inner = ScriptedClient([RuntimeError("boom")])
    client = LimitedClient(inner, max_in_flight=1)
    with pytest.raises(RuntimeError):
        await client.complete(ask())
    assert (await client.complete(ask())).text == "ok"


async def test_requests_per_minute_spaces_calls_on_the_clock():
    clock = FakeClock()
    inner = ScriptedClient(clock=clock)
    client = LimitedClient(inner, max_in_flight=10, requests_per_minute=60, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(client.complete(ask(f"q{i}")) for i in range(5)))
    start = inner.call_times[0]
    assert [round(t - start, 6) for t in inner.call_times] == [0.0, 1.0, 2.0, 3.0, 4.0]


async def test_requests_per_minute_allows_a_second_of_burst_then_the_rate():
    clock = FakeClock()
    inner = ScriptedClient(clock=clock)
    client = LimitedClient(inner, max_in_flight=100, requests_per_minute=600, clock=clock, sleep=clock.sleep)
    await asyncio.gather(*(client.complete(ask(f"q{i}")) for i in range(30)))
    start = inner.call_times[0]
    offsets = [t - start for t in inner.call_times]
    assert offsets[:10] == [0.0] * 10  # 10 per second may go at once
    assert offsets[-1] == pytest.approx(2.0)  # the other 20 at 10 per second
    for window_start in offsets:  # never more than capacity + rate * t in any window
        in_window = [t for t in offsets if window_start <= t < window_start + 1.0]
        assert len(in_window) <= 20


async def test_tokens_per_minute_is_charged_by_estimate_and_corrected_by_usage():
    clock = FakeClock()
    inner = ScriptedClient(clock=clock, usage=Usage(prompt_tokens=10, completion_tokens=10))
    client = LimitedClient(inner, max_in_flight=10, tokens_per_minute=600, clock=clock, sleep=clock.sleep)
    big = ask("x" * 400, max_tokens=100)  # estimated 201 tokens, actually costs 20
    assert estimate_tokens(big) == 201
    for _ in range(20):  # each nets 20 tokens once corrected: 20 calls leave 200 of the 600
        await client.complete(big)
    assert clock.sleeps == []  # without the correction only 2 calls (2 * 201) would have fitted
    await client.complete(big)  # needs 201, has 200: waits for one token at 10 tokens/s
    assert clock.sleeps == [pytest.approx(0.1)]


async def test_token_bucket_waiters_are_served_in_order():
    clock = FakeClock()
    bucket = TokenBucket(60, clock=clock, sleep=clock.sleep)
    order: list[int] = []

    async def take(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    await asyncio.gather(*(take(i) for i in range(4)))
    assert order == [0, 1, 2, 3] and clock.now == pytest.approx(1003.0)


async def test_against_the_fake_server_peak_concurrency_equals_the_cap():
    cap = 4
    async with running_fake_llm(concurrency=100) as server:
        transport = HTTPTransport(base_url=server.base_url, model="m")
        client = LimitedClient(transport, max_in_flight=cap)
        try:
            server.pause()
            calls = [asyncio.create_task(client.complete(ask(f"What is {i} + 1?"))) for i in range(5 * cap)]
            await asyncio.wait_for(server.wait_in_service(cap), timeout=30)
            await asyncio.sleep(0.05)  # give a broken cap the chance to send more
            in_service_while_paused = server.stats()["in_service"]
            server.resume()
            replies = await asyncio.gather(*calls)
        finally:
            await transport.aclose()
    stats = server.stats()
    assert in_service_while_paused == cap
    assert stats["peak_in_service"] == cap
    assert stats["completed"] == 5 * cap == len(replies)
