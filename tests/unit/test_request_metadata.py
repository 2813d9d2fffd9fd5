"""Every request gpo-ray sends carries its role and purpose as HTTP headers (X-GPO-Role, X-GPO-Purpose), outside
the body and the cache key: real endpoints ignore them, the bodies are the same bytes with or without them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.protocol import (
    PURPOSE_HEADER,
    ROLE_HEADER,
    ChatRequest,
    metadata_headers,
    user_message,
)
from gpo_ray.llm.stack import build_client
from gpo_ray.llm.transport import HTTPTransport, OpenAITransport
from gpo_ray.vocabulary import Purpose, Role

SECRET = "sk-test-METADATA-0123456789abcdef"
KEY_ENV = "GPO_TEST_METADATA_KEY"


class WireRecorder:
    """A bare endpoint that keeps each request's raw body bytes and headers, and answers a fixed completion."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, Any]] = []  # (body, headers: case-insensitive, as HTTP)

    async def handle(self, request: web.Request) -> web.Response:
        self.seen.append((await request.read(), request.headers.copy()))
        return web.json_response({"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})


@pytest.mark.parametrize("Transport", [HTTPTransport, OpenAITransport], ids=["http", "openai"])
async def test_the_metadata_is_headers_only_the_body_bytes_and_the_cache_key_do_not_change(Transport, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    recorder = WireRecorder()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", recorder.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base_url = f"http://127.0.0.1:{runner.addresses[0][1]}/v1"
    plain = ChatRequest(messages=user_message("What is 2 + 3?"), temperature=0.5, max_tokens=64, seed=7,
                        stop=("\n\n",), json_schema={"type": "object"})
    try:
        bare = Transport(base_url=base_url, model="m", api_key_env=KEY_ENV)  # no role: as before the metadata
        await bare.complete(plain)
        await bare.aclose()
        for role in Role:
            transport = Transport(base_url=base_url, model="m", api_key_env=KEY_ENV, role=role)
            for purpose in Purpose:
                tagged = replace(plain, purpose=purpose)
                assert tagged.cache_key("m") == plain.cache_key("m")
                assert transport.request_params(tagged) == transport.request_params(plain)
                await transport.complete(tagged)
            await transport.aclose()
    finally:
        await runner.cleanup()

    (body, headers), *rest = recorder.seen
    assert ROLE_HEADER not in headers and PURPOSE_HEADER not in headers
    assert len(rest) == len(Role) * len(Purpose)
    pairs = [(role.value, purpose.value) for role in Role for purpose in Purpose]
    for (tagged_body, tagged_headers), (role, purpose) in zip(rest, pairs, strict=True):
        assert tagged_body == body  # byte for byte
        assert "purpose" not in json.loads(tagged_body)
        assert (tagged_headers[ROLE_HEADER], tagged_headers[PURPOSE_HEADER]) == (role, purpose)
        assert SECRET not in tagged_headers[ROLE_HEADER] + tagged_headers[PURPOSE_HEADER]


def test_only_vocabulary_words_travel_as_metadata():
    assert metadata_headers(role=None, purpose=None) == {}
    assert metadata_headers(role="judge", purpose="judge") == {ROLE_HEADER: "judge", PURPOSE_HEADER: "judge"}
    with pytest.raises(ValueError, match="purpose"):
        ChatRequest(messages=user_message("Q"), purpose=SECRET)
    with pytest.raises(ValueError, match="role"):
        HTTPTransport(base_url="http://127.0.0.1:9/v1", model="m", role=SECRET)
    with pytest.raises(ValueError, match="purpose"):
        metadata_headers(role="optimizer", purpose="Bearer " + SECRET)
    # A stack named outside the vocabulary (tests name theirs freely) sends no role header.
    stack = build_client(LLMRoleConfig(), role_name="task", base_url="http://127.0.0.1:9/v1", model="m", cache=None,
                         counters=UsageCounters())
    transport = stack
    while hasattr(transport, "inner"):
        transport = transport.inner
    assert isinstance(transport, HTTPTransport) and transport.role is None
