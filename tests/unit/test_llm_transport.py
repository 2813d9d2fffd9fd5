"""Both transports against the fake server over real loopback HTTP: one behaviour, two implementations."""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickle
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from gpo_ray.llm.errors import (
    FatalLLMError,
    MalformedResponse,
    OversizedResponse,
    RateLimited,
    RetryableLLMError,
    StalledResponse,
)
from gpo_ray.llm.protocol import ChatMessage, ChatRequest, user_message
from gpo_ray.llm.transport import HTTPTransport, MissingAPIKey, OpenAITransport, retry_after_s
from gpo_ray.testing import running_fake_llm

SECRET = "sk-test-SECRETVALUE-1234567890abcdef"


@pytest.fixture(params=[HTTPTransport, OpenAITransport], ids=["http", "openai"])
def Transport(request):
    return request.param


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=user_message(text), **kw)


async def test_a_reply_carries_text_usage_and_finish_reason(Transport):
    async with running_fake_llm(answer_key={"Is the sky blue?": "Yes"}, base_accuracy=1.0) as server:
        transport = Transport(base_url=server.base_url, model="fake-model")
        try:
            response = await transport.complete(ask("Is the sky blue?", seed=3))
        finally:
            await transport.aclose()
    assert response.text.endswith("The answer is Yes.")
    assert response.finish_reason == "stop"
    assert response.cached is False
    stats = server.stats()
    assert response.usage.prompt_tokens == stats["prompt_tokens"]
    assert response.usage.completion_tokens == stats["completion_tokens"]


async def test_sends_stop_max_tokens_and_the_json_schema_only_when_structured_output_is_on(Transport):
    meta = "Improve it.\n<current_prompt>\nSolve it.\n</current_prompt>\n"
    schema = {"type": "object", "properties": {"prompt": {"type": "string"}}, "required": ["prompt"]}
    messages = (ChatMessage("system", "You edit prompts."), ChatMessage("user", meta))
    request = ChatRequest(messages=messages, json_schema=schema, seed=1)
    async with running_fake_llm() as server:
        structured = Transport(base_url=server.base_url, model="m", structured_output=True)
        plain = Transport(base_url=server.base_url, model="m", structured_output=False)
        try:
            as_json = await structured.complete(request)
            as_text = await plain.complete(request)
            stopped = await plain.complete(ChatRequest(messages=user_message(meta), stop=("<END>",), seed=1))
            short = await plain.complete(ChatRequest(messages=user_message(meta), max_tokens=2, seed=1))
        finally:
            await structured.aclose()
            await plain.aclose()
    assert as_json.text.startswith('{"prompt": "Solve it. ')
    assert as_text.text.startswith("<START>Solve it. ") and as_text.text.endswith("<END>")
    assert stopped.text.startswith("<START>") and "<END>" not in stopped.text
    assert short.finish_reason == "length"
    assert "response_format" not in plain.request_params(request)
    assert structured.request_params(request)["response_format"]["json_schema"]["strict"] is True


async def test_rate_limit_is_retryable_and_carries_retry_after(Transport):
    async with running_fake_llm(retry_after_s=1.5) as server:
        transport = Transport(base_url=server.base_url, model="m")
        try:
            with pytest.raises(RateLimited) as info:
                await transport.complete(ask("hi [[fault:429]]"))
        finally:
            await transport.aclose()
    assert info.value.retryable and info.value.retry_after == 1.5
    assert server.base_url in str(info.value) and "model=m" in str(info.value)


@pytest.mark.parametrize(
    ("marker", "error_type", "kind"),
    [
        ("500", RetryableLLMError, "server_error"),
        ("503", RetryableLLMError, "server_error"),
        ("408", RetryableLLMError, "timeout"),
        ("409", RetryableLLMError, "conflict"),
        ("401", FatalLLMError, "auth"),
        ("403", FatalLLMError, "auth"),
        ("400", FatalLLMError, "bad_request"),
        ("404", FatalLLMError, "not_found"),
        ("quota", FatalLLMError, "quota"),
        ("malformed", MalformedResponse, "malformed"),
        ("empty", MalformedResponse, "malformed"),
    ],
)
async def test_http_failures_map_to_typed_errors(Transport, marker, error_type, kind):
    async with running_fake_llm() as server:
        transport = Transport(base_url=server.base_url, model="m")
        try:
            with pytest.raises(error_type) as info:
                await transport.complete(ask(f"hello [[fault:{marker}]]"))
        finally:
            await transport.aclose()
    assert type(info.value) is error_type
    assert info.value.kind == kind
    assert f"endpoint={server.base_url}" in str(info.value) and "model=m" in str(info.value)


async def test_a_hung_request_times_out_as_retryable(Transport):
    async with running_fake_llm() as server:
        transport = Transport(base_url=server.base_url, model="m", timeout_s=0.3)
        try:
            with pytest.raises(RetryableLLMError) as info:
                await transport.complete(ask("wait [[fault:hang]]"))
        finally:
            await transport.aclose()
    assert info.value.kind == "timeout"
    assert server.stats()["faults"] == {"hang": 1}


async def test_a_reply_larger_than_max_tokens_allows_is_refused_as_oversized(Transport):
    async with running_fake_llm(oversized_bytes=20_000_000) as server:
        transport = Transport(base_url=server.base_url, model="m")
        try:
            with pytest.raises(OversizedResponse) as info:
                await transport.complete(ask("say a lot [[fault:oversized]]", max_tokens=64))
            normal = await transport.complete(ask("say a little", max_tokens=64))
        finally:
            await transport.aclose()
    assert info.value.kind == "oversized" and info.value.retryable
    assert "max_tokens 64" in str(info.value)
    assert normal.text, "a reply of the size asked for is read as always"
    assert server.stats()["oversized_bytes_sent"] < 20_000_000 // 2  # both stop reading at the limit


async def test_the_cap_bounds_a_reply_without_max_tokens(Transport):
    async with running_fake_llm(oversized_bytes=3_000_000) as server:
        transport = Transport(base_url=server.base_url, model="m", max_reply_bytes=1_000_000)
        try:
            with pytest.raises(OversizedResponse, match="no max_tokens"):
                await transport.complete(ask("say a lot [[fault:oversized]]"))
        finally:
            await transport.aclose()


async def test_a_body_that_stops_arriving_is_cut_by_the_read_timeout_as_stalled(Transport):
    async with running_fake_llm() as server:
        transport = Transport(base_url=server.base_url, model="m", timeout_s=60, read_timeout_s=0.3)
        try:
            with pytest.raises(StalledResponse) as info:
                await transport.complete(ask("start then stop [[fault:stall]]"))
        finally:
            await transport.aclose()
    assert info.value.kind == "stalled" and info.value.retryable


async def test_a_body_that_began_and_went_silent_is_cut_at_the_idle_limit_not_the_read_timeout(Transport):
    async with running_fake_llm() as server:
        transport = Transport(base_url=server.base_url, model="m", timeout_s=60, read_timeout_s=30,
                              idle_read_timeout_s=0.3)
        try:
            with pytest.raises(StalledResponse, match=r"stopped arriving for 0\.3s after \d+ bytes"):
                await transport.complete(ask("start then stop [[fault:stall]]"))
        finally:
            await transport.aclose()


REPLY = {"id": "c", "object": "chat.completion", "usage": {"prompt_tokens": 3, "completion_tokens": 9},
         "choices": [{"index": 0, "message": {"role": "assistant", "content": "slow and sure " * 20},
                      "finish_reason": "stop"}]}


@contextlib.asynccontextmanager
async def paced_endpoint(*, pieces: int, gap_s: float, think_s: float = 0.0) -> AsyncIterator[str]:
    """A healthy endpoint whose replies take their time: headers at once, then `think_s` of silence, then the body in
    `pieces` pieces `gap_s` apart (one piece: the whole body at once, after the think)."""
    body = json.dumps(REPLY).encode()

    async def chat(request: web.Request) -> web.StreamResponse:
        reply = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await reply.prepare(request)
        await asyncio.sleep(think_s)
        size = -(-len(body) // pieces)
        for i in range(pieces):
            if i:
                await asyncio.sleep(gap_s)
            await reply.write(body[i * size:(i + 1) * size])
        await reply.write_eof()
        return reply

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_the_idle_limit_spares_a_long_generation_that_streams_steadily(Transport):
    # 2.4 s of body in 25 pieces 0.1 s apart: eight times the idle limit in all, never silent for as long as it.
    async with paced_endpoint(pieces=25, gap_s=0.1) as url:
        transport = Transport(base_url=url, model="m", timeout_s=60, read_timeout_s=30, idle_read_timeout_s=0.3)
        try:
            first = await transport.complete(ask("write a lot"))
            second = await transport.complete(ask("write a lot again"))
        finally:
            await transport.aclose()
    assert first.text == second.text == REPLY["choices"][0]["message"]["content"]


async def test_the_idle_limit_spares_a_body_that_comes_whole_after_a_long_think(Transport):
    # Headers at once, then 1.5 s of silence (five idle limits), then the whole body: only read_timeout_s bounds the
    # wait for a body's first bytes.
    async with paced_endpoint(pieces=1, gap_s=0.0, think_s=1.5) as url:
        transport = Transport(base_url=url, model="m", timeout_s=60, read_timeout_s=30, idle_read_timeout_s=0.3)
        try:
            response = await transport.complete(ask("think hard"))
        finally:
            await transport.aclose()
    assert response.text == REPLY["choices"][0]["message"]["content"]


async def test_an_endpoint_that_pauses_longer_than_the_floor_gets_through_and_is_learnt(Transport):
    # Pieces 0.4 s apart, a floor of 0.15 s: cut at 0.15 s, then 0.3 s (each cut in a row doubles the floor), then
    # read whole with 0.6 s allowed; from then on its pace is known (4 x 0.4 s allowed) and no reply is cut.
    async with paced_endpoint(pieces=3, gap_s=0.4) as url:
        transport = Transport(base_url=url, model="m", timeout_s=60, read_timeout_s=30, idle_read_timeout_s=0.15)
        outcomes = []
        try:
            for i in range(5):
                try:
                    await transport.complete(ask(f"write slowly {i}"))
                    outcomes.append("read")
                except StalledResponse:
                    outcomes.append("cut")
        finally:
            await transport.aclose()
    assert outcomes == ["cut", "cut", "read", "read", "read"]


async def test_the_read_timeout_does_not_cut_a_slow_generation_before_its_headers(Transport):
    async with running_fake_llm(latency_s=0.6) as server:  # no byte at all until the whole reply is ready
        transport = Transport(base_url=server.base_url, model="m", timeout_s=60, read_timeout_s=0.2)
        try:
            response = await transport.complete(ask("think slowly"))
        finally:
            await transport.aclose()
    assert response.text


async def test_a_refused_connection_is_retryable(Transport):
    async with running_fake_llm() as server:
        url = server.base_url
    transport = Transport(base_url=url, model="m", timeout_s=2)  # the server is gone now
    try:
        with pytest.raises(RetryableLLMError) as info:
            await transport.complete(ask("anyone?"))
    finally:
        await transport.aclose()
    assert info.value.kind == "connection"


def test_an_unset_key_variable_is_named_and_a_missing_name_means_no_key(Transport, monkeypatch):
    monkeypatch.delenv("GPO_TEST_UNSET_KEY", raising=False)
    with pytest.raises(MissingAPIKey, match="GPO_TEST_UNSET_KEY"):
        Transport(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="GPO_TEST_UNSET_KEY")
    Transport(base_url="http://127.0.0.1:9/v1", model="m", api_key_env=None)  # local server: no key needed


async def test_a_wrong_key_fails_fatally_without_revealing_it(Transport, monkeypatch):
    monkeypatch.setenv("GPO_TEST_CLIENT_KEY", SECRET)
    monkeypatch.setenv("GPO_TEST_SERVER_KEY", "sk-the-right-one-0000000000")
    async with running_fake_llm(api_key_env="GPO_TEST_SERVER_KEY") as server:
        transport = Transport(base_url=server.base_url, model="m", api_key_env="GPO_TEST_CLIENT_KEY")
        try:
            with pytest.raises(FatalLLMError) as info:
                await transport.complete(ask("hello"))
        finally:
            await transport.aclose()
    message = str(info.value)
    assert "GPO_TEST_CLIENT_KEY" in message and "401" in message
    assert SECRET not in message and "SECRETVALUE" not in message
    assert SECRET not in repr(transport)


async def test_the_right_key_is_accepted(Transport, monkeypatch):
    monkeypatch.setenv("GPO_TEST_KEY", SECRET)
    async with running_fake_llm(api_key_env="GPO_TEST_KEY") as server:
        transport = Transport(base_url=server.base_url, model="m", api_key_env="GPO_TEST_KEY")
        try:
            response = await transport.complete(ask("What is 2 + 2?"))
        finally:
            await transport.aclose()
    assert "The answer is" in response.text


def test_pickling_drops_the_key_and_rereads_it_from_the_environment(Transport, monkeypatch):
    monkeypatch.setenv("GPO_TEST_KEY", SECRET)
    transport = Transport(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="GPO_TEST_KEY")
    blob = pickle.dumps(transport)
    assert SECRET.encode() not in blob
    monkeypatch.setenv("GPO_TEST_KEY", "sk-other-process-key-000000")
    copy = pickle.loads(blob)
    assert copy.endpoint == transport.endpoint and copy._api_key == "sk-other-process-key-000000"


def test_server_text_is_scrubbed_of_key_like_strings(Transport, monkeypatch):
    monkeypatch.setenv("GPO_TEST_KEY", SECRET)
    transport = Transport(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="GPO_TEST_KEY")
    scrubbed = transport.scrub(f"Incorrect API key provided: {SECRET[:10]}****cdef and {SECRET} Bearer abc.def")
    assert "SECRET" not in scrubbed and "sk-test" not in scrubbed and "abc.def" not in scrubbed


def test_retry_after_headers():
    assert retry_after_s({"retry-after-ms": "250"}) == 0.25
    assert retry_after_s({"retry-after": "3"}) == 3.0
    assert retry_after_s({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # a date in the past
    assert retry_after_s({"retry-after": "soon"}) is None
    assert retry_after_s({}) is None
