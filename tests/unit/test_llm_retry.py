"""The retry layer: what is retried, how long it waits, where it stops."""

from __future__ import annotations

import random

import pytest
from structlog.testing import capture_logs

from gpo_ray.llm.errors import (
    EndpointUnavailable,
    FatalLLMError,
    MalformedResponse,
    RateLimited,
    RetryableLLMError,
    StalledResponse,
)
from gpo_ray.llm.protocol import ChatRequest, user_message
from gpo_ray.llm.retry import RetryingClient, backoff_delay
from gpo_ray.llm.transport import HTTPTransport
from gpo_ray.testing import running_fake_llm
from tests.fakes import RecordingSleep, ScriptedClient

REQUEST = ChatRequest(messages=user_message("hello"))


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=user_message(text))
WHERE = {"endpoint": "http://127.0.0.1:1/v1", "model": "m"}


async def test_retryable_errors_are_retried_until_an_answer():
    inner = ScriptedClient([RetryableLLMError("boom", **WHERE), MalformedResponse("junk", **WHERE), "fine"])
    sleep = RecordingSleep()
    kinds: list[str] = []
    client = RetryingClient(inner, max_attempts=3, sleep=sleep, rng=random.Random(0), on_retry=kinds.append)
    response = await client.complete(REQUEST)
    assert response.text == "fine"
    assert len(inner.requests) == 3
    assert kinds == ["retryable", "malformed"]
    assert len(sleep.delays) == 2


async def test_a_stalled_reply_is_retried_at_once_its_silence_was_the_wait():
    inner = ScriptedClient([StalledResponse("stopped arriving for 0.5s", **WHERE),
                            RetryableLLMError("HTTP 503", **WHERE), "fine"])
    sleep = RecordingSleep()
    client = RetryingClient(inner, max_attempts=3, sleep=sleep, rng=random.Random(1), base_delay_s=0.5)
    assert (await client.complete(REQUEST)).text == "fine"
    assert sleep.delays[0] == 0.0 and sleep.delays[1] > 0.0


async def test_a_fatal_error_is_not_retried():
    inner = ScriptedClient([FatalLLMError("HTTP 401", **WHERE), "never"])
    sleep = RecordingSleep()
    client = RetryingClient(inner, max_attempts=5, sleep=sleep)
    with pytest.raises(FatalLLMError):
        await client.complete(REQUEST)
    assert len(inner.requests) == 1 and sleep.delays == []


async def test_gives_up_after_the_bound_naming_endpoint_model_and_last_error():
    inner = ScriptedClient([RetryableLLMError("HTTP 503 server error", **WHERE)] * 10)
    client = RetryingClient(inner, max_attempts=4, sleep=RecordingSleep())
    with pytest.raises(EndpointUnavailable) as info:
        await client.complete(REQUEST)
    assert len(inner.requests) == 4
    message = str(info.value)
    assert "4 attempts" in message and "HTTP 503" in message
    assert "endpoint=http://127.0.0.1:1/v1" in message and "model=m" in message
    assert message.count("endpoint=") == 1
    assert isinstance(info.value.__cause__, RetryableLLMError)


async def test_waits_at_least_retry_after():
    inner = ScriptedClient(
        [RateLimited("429", retry_after=7.0, **WHERE), RateLimited("429", retry_after=0.0, **WHERE), "ok"]
    )
    sleep = RecordingSleep()
    client = RetryingClient(inner, max_attempts=3, base_delay_s=0.5, max_delay_s=2.0, sleep=sleep, rng=random.Random(1))
    await client.complete(REQUEST)
    assert sleep.delays[0] == 7.0  # longer than any backoff allowed by max_delay_s
    assert 0.0 <= sleep.delays[1] <= 1.0  # no Retry-After: plain backoff for the 2nd retry (0.5 * 2)


def test_backoff_is_full_jitter_under_an_exponential_ceiling():
    rng = random.Random(42)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (10, 30.0)]:
        delays = [backoff_delay(attempt, base_delay_s=0.5, max_delay_s=30.0, rng=rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # jitter spreads over the whole range


async def test_each_retry_is_logged_with_attempt_kind_and_delay():
    inner = ScriptedClient([RateLimited("429", retry_after=2.0, **WHERE), "ok"])
    client = RetryingClient(inner, max_attempts=2, sleep=RecordingSleep(), log_context={"role": "task"})
    with capture_logs() as logs:
        await client.complete(REQUEST)
    [event] = [e for e in logs if e["event"] == "llm_retry"]
    assert event["attempt"] == 1 and event["error_kind"] == "rate_limited" and event["delay_s"] == 2.0
    assert event["role"] == "task" and event["model"] == "m"


async def test_against_the_fake_server_retry_after_is_honoured_and_the_bound_holds():
    sleep = RecordingSleep()
    async with running_fake_llm(retry_after_s=1.25) as server:
        transport = HTTPTransport(base_url=server.base_url, model="m")
        client = RetryingClient(transport, max_attempts=3, sleep=sleep)
        try:
            recovered = await client.complete(ask("What is 1 + 1? [[fault:first:2:429]]"))
            with pytest.raises(EndpointUnavailable) as info:
                await client.complete(ChatRequest(messages=user_message("What is 2 + 2? [[fault:429]]")))
        finally:
            await transport.aclose()
    assert "The answer is" in recovered.text
    assert sleep.delays == [1.25, 1.25, 1.25, 1.25]
    assert server.stats()["status"] == {"200": 1, "429": 5}
    assert server.base_url in str(info.value) and "RateLimited" in str(info.value)


async def test_against_the_fake_server_401_is_sent_once():
    sleep = RecordingSleep()
    async with running_fake_llm() as server:
        transport = HTTPTransport(base_url=server.base_url, model="m")
        client = RetryingClient(transport, max_attempts=5, sleep=sleep)
        try:
            with pytest.raises(FatalLLMError):
                await client.complete(ChatRequest(messages=user_message("hi [[fault:401]]")))
        finally:
            await transport.aclose()
    assert server.stats()["requests"] == 1 and sleep.delays == []


async def test_malformed_bodies_are_retried_then_surfaced_naming_endpoint_and_model():
    sleep = RecordingSleep()
    async with running_fake_llm() as server:
        transport = HTTPTransport(base_url=server.base_url, model="the-model")
        client = RetryingClient(transport, max_attempts=3, sleep=sleep)
        try:
            with pytest.raises(EndpointUnavailable) as info:
                await client.complete(ChatRequest(messages=user_message("hi [[fault:malformed]]")))
            healed = await client.complete(ask("What is 5 - 2? [[fault:once:malformed]]"))
        finally:
            await transport.aclose()
    message = str(info.value)
    assert "MalformedResponse" in message and "not JSON" in message
    assert f"endpoint={server.base_url}" in message and "model=the-model" in message
    assert "The answer is" in healed.text
    assert server.stats()["faults"] == {"malformed": 4}


def test_at_least_one_attempt():
    with pytest.raises(ValueError):
        RetryingClient(ScriptedClient(), max_attempts=0)


async def test_rate_limiting_is_retried_past_the_attempt_bound_until_the_wait_is_spent():
    """A burst of 429s longer than a few quick backoffs slows a call down; it does not end it (and so the run)."""
    limited = [RateLimited("HTTP 429 rate limited", **WHERE)] * 9
    sleep = RecordingSleep()
    client = RetryingClient(ScriptedClient([*limited, "fine"]), max_attempts=3, sleep=sleep, rng=random.Random(3),
                            max_delay_s=1.0, rate_limited_for_s=20.0)
    assert (await client.complete(REQUEST)).text == "fine"
    assert len(sleep.delays) == 9

    endless = ScriptedClient([RateLimited("HTTP 429 rate limited", **WHERE)] * 200)
    sleep = RecordingSleep()
    client = RetryingClient(endless, max_attempts=3, sleep=sleep, rng=random.Random(3), max_delay_s=1.0,
                            rate_limited_for_s=20.0)
    with pytest.raises(EndpointUnavailable, match="RateLimited"):
        await client.complete(REQUEST)
    assert sum(sleep.delays) >= 20.0 and sum(sleep.delays[:-1]) < 20.0, "gives up once the wait is spent"


async def test_other_retryable_errors_keep_the_attempt_bound():
    inner = ScriptedClient([RetryableLLMError("HTTP 500 server error", **WHERE)] * 10)
    client = RetryingClient(inner, max_attempts=3, sleep=RecordingSleep(), rate_limited_for_s=600.0)
    with pytest.raises(EndpointUnavailable, match="3 attempts"):
        await client.complete(REQUEST)
    assert len(inner.requests) == 3
