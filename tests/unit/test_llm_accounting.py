"""Usage accounting, and the whole stack from build_client against the fake server."""

from __future__ import annotations

import asyncio
import logging

import pytest
from structlog.testing import capture_logs

from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.accounting import AccountingClient, AttemptCountingClient, UsageCounters, error_kind
from gpo_ray.llm.cache import ResponseCache
from gpo_ray.llm.errors import EndpointUnavailable, FatalLLMError, RateLimited
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage, user_message
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.testing import FakeLLMConfig, running_fake_llm
from tests.fakes import ScriptedClient

SECRET = "sk-test-NEVERSHOWME-0123456789abcdef"


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=user_message(text), **kw)


def test_counters_merge_and_snapshot():
    a = UsageCounters(calls=2, requests=3, prompt_tokens=10, completion_tokens=5, cache_hits=1, retries=1)
    a.record_error("rate_limited")
    b = UsageCounters(calls=1, requests=1, prompt_tokens=4, completion_tokens=2)
    b.errors.update({"rate_limited": 2, "timeout": 1})
    a.merge(b).merge(b.snapshot())
    assert a.snapshot() == {
        "calls": 4,
        "requests": 5,
        "prompt_tokens": 18,
        "completion_tokens": 9,
        "total_tokens": 27,
        "cache_hits": 1,
        "retries": 1,
        "errors": {"rate_limited": 5, "timeout": 2},
        "hedges": {},
    }
    assert UsageCounters.from_snapshot(a.snapshot()) == a


async def test_attempts_tokens_and_errors_are_counted_where_the_endpoint_is():
    counters = UsageCounters()
    inner = ScriptedClient([RateLimited("429"), "ok"], usage=Usage(7, 3))
    counting = AttemptCountingClient(inner, counters=counters)
    with pytest.raises(RateLimited):
        await counting.complete(ask("q"))
    await counting.complete(ask("q"))
    assert (counters.requests, counters.prompt_tokens, counters.completion_tokens) == (2, 7, 3)
    assert counters.errors == {"rate_limited": 1}


async def test_the_outer_layer_counts_calls_and_cache_hits():
    class Cached:
        async def complete(self, request: ChatRequest) -> ChatResponse:
            return ChatResponse(text="x", cached=True)

    counters = UsageCounters()
    await AccountingClient(Cached(), counters=counters).complete(ask("q"))
    assert (counters.calls, counters.cache_hits, counters.requests) == (1, 1, 0)


def test_error_kinds_fall_back_to_the_class():
    assert error_kind(RateLimited("x")) == "rate_limited"
    assert error_kind(FatalLLMError("x")) == "fatal"
    assert error_kind(EndpointUnavailable("x")) == "unavailable"


def role(**kw) -> LLMRoleConfig:
    return LLMRoleConfig(base_url="http://set-at-run-time", model="fake-model", **kw)


async def test_accounting_matches_the_servers_own_counters(tmp_path):
    counters = UsageCounters()
    fake = FakeLLMConfig(retry_after_s=0.0, error_rate_500=0.2, answer_key={"Capital of France?": "Paris"})
    async with running_fake_llm(fake) as server:
        client = build_client(
            role(max_retries=8, max_in_flight=4), role_name="task", base_url=server.base_url, model="fake-model",
            cache=ResponseCache(tmp_path), counters=counters, base_delay_s=0.001,
        )
        try:
            questions = [f"What is {i} * 3?" + (" [[fault:once:429]]" if i % 3 == 0 else "") for i in range(24)]
            questions += ["Capital of France?", "What is 1 + 1? [[fault:once:malformed]]"]
            first = await asyncio.gather(*(client.complete(ask(q, seed=1)) for q in questions))
            again = await asyncio.gather(*(client.complete(ask(q, seed=1)) for q in questions[:10]))
        finally:
            await close_client(client)
    stats = server.stats()
    assert all(not r.cached for r in first) and all(r.cached for r in again)
    assert counters.requests == stats["requests"]
    assert counters.prompt_tokens == stats["prompt_tokens"] and counters.completion_tokens == stats["completion_tokens"]
    assert counters.errors.get("rate_limited", 0) == stats["status"]["429"] == 8
    assert counters.errors.get("server_error", 0) == stats["status"].get("500", 0) > 0
    assert counters.errors.get("malformed", 0) == stats["faults"]["malformed"] == 1
    assert counters.retries == sum(counters.errors.values())
    assert (counters.calls, counters.cache_hits) == (36, 10)
    assert stats["duplicates"] == 0  # nothing answered twice
    assert "Paris" in first[24].text  # from the answer key (right or wrong, it names Paris)


async def test_a_cached_answer_is_reused_after_a_restart(tmp_path):
    async with running_fake_llm() as server:
        for _ in range(2):  # two "runs": new stack, same cache directory
            counters = UsageCounters()
            client = build_client(role(), role_name="task", base_url=server.base_url, model="fake-model",
                                  cache=ResponseCache(tmp_path / "cache"), counters=counters)
            try:
                response = await client.complete(ask("What is 6 * 7?", seed=0))
            finally:
                await close_client(client)
        stats = server.stats()
    assert response.cached and "The answer is" in response.text
    assert stats["requests"] == 1
    assert (counters.requests, counters.cache_hits) == (0, 1)


async def test_the_in_flight_cap_holds_for_the_whole_stack():
    async with running_fake_llm(latency_s=0.01) as server:
        client = build_client(role(max_in_flight=3), role_name="task", base_url=server.base_url, model="fake-model",
                              cache=None, counters=UsageCounters())
        try:
            server.pause()
            calls = [asyncio.create_task(client.complete(ask(f"What is {i} + 2?"))) for i in range(15)]
            await asyncio.wait_for(server.wait_in_service(3), timeout=30)
            server.resume()
            await asyncio.gather(*calls)
        finally:
            await close_client(client)
    assert server.stats()["peak_in_service"] == 3


@pytest.mark.parametrize("transport", ["http", "openai"])
async def test_the_key_never_reaches_logs_or_errors(transport, tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.setenv("GPO_TEST_KEY", SECRET)
    monkeypatch.setenv("GPO_TEST_SERVER_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    counters = UsageCounters()
    messages: list[str] = []
    async with running_fake_llm(api_key_env="GPO_TEST_SERVER_KEY", retry_after_s=0.0) as server:
        client = build_client(role(api_key_env="GPO_TEST_KEY", max_retries=2, transport=transport), role_name="optimizer",
                              base_url=server.base_url, model="fake-model", cache=ResponseCache(tmp_path),
                              counters=counters, base_delay_s=0.001)
        try:
            with capture_logs() as logs:
                await client.complete(ask("What is 2 + 2? [[fault:once:429]]"))
                for marker in ("500", "malformed", "401"):
                    try:
                        await client.complete(ask(f"q [[fault:{marker}]]"))
                    except (EndpointUnavailable, FatalLLMError) as e:
                        messages.append(str(e))
                        messages.append(repr(e.__cause__))
        finally:
            await close_client(client)
        monkeypatch.setenv("GPO_TEST_KEY", "sk-wrong-key-for-this-server-000")
        wrong = build_client(role(api_key_env="GPO_TEST_KEY", transport=transport), role_name="task", base_url=server.base_url,
                             model="fake-model", cache=None, counters=UsageCounters())
        try:
            with pytest.raises(FatalLLMError) as info:
                await wrong.complete(ask("hello"))
            messages.append(str(info.value))
        finally:
            await close_client(wrong)
    assert any(e["event"] == "llm_retry" for e in logs)  # the logs were captured, and they are clean:
    assert len(messages) == 3 * 2 + 1
    captured = capsys.readouterr()
    everything = "\n".join([*messages, caplog.text, captured.out, captured.err, repr(logs), repr(client)])
    assert SECRET not in everything and "NEVERSHOWME" not in everything and SECRET[:12] not in everything
    assert "sk-wrong-key" not in everything  # the fake quotes part of a wrong key, as the real API does
    if transport == "openai":
        assert "HTTP Request: POST" in caplog.text  # the SDK's own logging was captured too
    cache_bytes = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"NEVERSHOWME" not in cache_bytes and server.base_url.encode() not in cache_bytes


async def test_structured_output_defaults_on_only_for_the_embedded_model():
    embedded = build_client(LLMRoleConfig(), role_name="task", base_url="http://127.0.0.1:9/v1", model="local",
                            cache=None, counters=UsageCounters())
    remote = build_client(role(), role_name="task", base_url="http://127.0.0.1:9/v1", model="remote",
                          cache=None, counters=UsageCounters())

    def transport_of(client):
        while hasattr(client, "inner"):
            client = client.inner
        return client

    assert transport_of(embedded).structured_output is True
    assert transport_of(remote).structured_output is False
