"""The fake reads roles (issue 25): every request gpo-ray sends carries its role and purpose as HTTP headers
(X-GPO-Role, X-GPO-Purpose), outside the body and the cache key; the fake endpoint answers by them, so a reworded
meta-prompt still reaches the right scripted model. Real endpoints ignore the headers: the bodies are the same
bytes with or without them."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from aiohttp import web

from gpo_ray.config import JudgeMetric, LLMRoleConfig, OptimizerSettings
from gpo_ray.core.evaluation import TaskModelParams, grade_examples
from gpo_ray.core.generation import (
    GenerationRequest,
    OptimizerTextRequest,
    ask_optimizer,
    generate_candidates,
)
from gpo_ray.core.loop import template_for
from gpo_ray.core.types import TrajectoryEntry, WrongExample
from gpo_ray.core.variants import (
    FEEDBACK,
    SUMMARIZE,
    build_feedback_request,
    build_summarize_prompts_request,
    extract_reply,
)
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.protocol import (
    PURPOSE_HEADER,
    ROLE_HEADER,
    ChatRequest,
    metadata_headers,
    user_message,
)
from gpo_ray.llm.stack import build_client, close_client
from gpo_ray.llm.transport import HTTPTransport, OpenAITransport
from gpo_ray.tasks.judge import JudgeParams, ask_judge
from gpo_ray.tasks.types import Example
from gpo_ray.testing import FakeLLMConfig, running_fake_llm
from gpo_ray.testing.scripted import FEEDBACK_REASONS
from gpo_ray.vocabulary import MetricKind, PromptPlacement, Purpose, Role

SECRET = "sk-test-METADATA-0123456789abcdef"
KEY_ENV = "GPO_TEST_METADATA_KEY"
PHRASES = ["Think step by step.", "Check each step carefully."]
QUESTION = Example("What is 2 + 3?", ("5",), id="eval:0")
# The scripted model each purpose reaches (the fake's "role" in /stats and the request log).
MODEL_OF = {"answer": "task", "second_turn": "task", "candidates": "optimizer", "feedback": "feedback",
            "summarize": "summarize", "judge": "judge"}


@pytest.fixture(params=["http", "openai"])
def transport(request):
    return request.param


def clients(base_url: str, transport: str) -> dict[Role, object]:
    """Each role's full client stack (build_client, as the actors build them), the role's name as its model."""
    role = LLMRoleConfig(transport=transport, api_key_env=KEY_ENV, max_retries=0)
    return {r: build_client(role, role_name=r, base_url=base_url, model=f"{r}-llm", cache=None,
                            counters=UsageCounters()) for r in Role}


async def test_every_role_and_purpose_is_on_the_wire_and_routes_the_request(transport, monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    fake = FakeLLMConfig(api_key_env=KEY_ENV, record_requests=True, answer_key={QUESTION.input: "5"},
                         base_accuracy=1.0, optimizer_phrases=PHRASES)
    async with running_fake_llm(fake) as server:
        by_role = clients(server.base_url, transport)
        try:
            # The task model: the answer, then the second turn's question (a numeric task asks for the number).
            graded = await grade_examples(by_role[Role.TASK_MODEL], "Solve it.", [QUESTION], metric=MetricKind.NUMERIC,
                                          params=TaskModelParams(answer_extraction="second_turn"), task="sums")
            optimizer = by_role[Role.OPTIMIZER]
            generated = await generate_candidates(optimizer, GenerationRequest(
                task="sums", step=1, current_prompt="Solve it.", retrieved=(), format_examples=(QUESTION,),
                edit_budget=10, n=2, tried=("Solve it.",), placement=PromptPlacement.END, structured=False))
            feedback = await ask_optimizer(optimizer, OptimizerTextRequest(
                task="sums", step=1, purpose=FEEDBACK, text=build_feedback_request(
                    current_prompt="Solve it.", wrong=[WrongExample("What is 2 + 3?", "6", "5")])))
            summary = await ask_optimizer(optimizer, OptimizerTextRequest(
                task="sums", step=2, purpose=SUMMARIZE, text=build_summarize_prompts_request(
                    previous=TrajectoryEntry("Solve it.", 0.5, 0), current=TrajectoryEntry("Add.", 0.75, 1))))
            judged = await ask_judge(by_role[Role.JUDGE], JudgeMetric(kind="judge", rubric="The correct sum."),
                                     QUESTION, "The answer is 5.", params=JudgeParams())
        finally:
            for client in by_role.values():
                await close_client(client)
        log = server.requests_log()

    sent = {(r["sent_role"], r["sent_purpose"]) for r in log}
    assert sent == {("task_model", "answer"), ("task_model", "second_turn"), ("optimizer", "candidates"),
                    ("optimizer", "feedback"), ("optimizer", "summarize"), ("judge", "judge")}
    assert len(log) == 7  # two candidates
    for r in log:
        assert r["model"] == f"{r['sent_role']}-llm"  # the header names the stack that sent it ...
        assert Purpose(r["sent_purpose"]).role == r["sent_role"]  # ... the role the purpose belongs to
        assert r["routed_by"] == "purpose" and r["role"] == MODEL_OF[r["sent_purpose"]]
        assert SECRET not in json.dumps(r)
    # ... and each got its scripted model's reply.
    assert graded[0][0] == 1.0
    assert all(c.startswith("Solve it. ") for c in generated.candidates)
    assert extract_reply(feedback) in FEEDBACK_REASONS
    assert extract_reply(summary).startswith("Add. ")
    assert judged.score == 1.0


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


# A config's own template (optimizer.meta_prompt) whose openings are the official GPO text's for other requests:
# the candidate request opens like the official feedback request, the summarize request with the official summarize
# sentence. A fake that tells requests apart by their prose answers the candidate request with feedback and misses
# the latest prompt of the summarize request; one that reads the purpose is not misled.
REWORDED = {
    "task": "Your task is to point out the problems with the current prompt based on the wrong examples.\n"
            "Then write a new prompt that has none of them.",
    "summarize_prompts_task": "Your task is to summarize the previous and current prompt based on their scores and "
                              "create a new prompt.",
    "feedback_task": "A language model was given the prompt below with each question further down, and got them wrong.",
    "feedback_instruction": "Say in one sentence what in the prompt misled it.",
}


async def test_a_reworded_meta_prompt_still_gets_the_scripted_replies():
    template = template_for(OptimizerSettings(meta_prompt=REWORDED))
    async with running_fake_llm(FakeLLMConfig(optimizer_phrases=PHRASES, record_requests=True)) as server:
        llm = build_client(LLMRoleConfig(max_retries=0), role_name=Role.OPTIMIZER, base_url=server.base_url,
                           model="m", cache=None, counters=UsageCounters())
        try:
            generated = await generate_candidates(llm, GenerationRequest(
                task="sums", step=1, current_prompt="Solve it.", retrieved=(), format_examples=(QUESTION,),
                edit_budget=10, n=2, tried=("Solve it.",), placement=PromptPlacement.END, structured=False,
                template=template, gradient="The prompt does not ask for the sum."))
            summary = await ask_optimizer(llm, OptimizerTextRequest(
                task="sums", step=2, purpose=SUMMARIZE, text=build_summarize_prompts_request(
                    previous=TrajectoryEntry("Solve it.", 0.5, 0), current=TrajectoryEntry("Add.", 0.75, 1),
                    template=template)))
            feedback = await ask_optimizer(llm, OptimizerTextRequest(
                task="sums", step=1, purpose=FEEDBACK, text=build_feedback_request(
                    current_prompt="Solve it.", wrong=[WrongExample("What is 2 + 3?", "6", "5")], template=template)))
        finally:
            await close_client(llm)
        log = server.requests_log()

    # The right models answered: the current prompt with a phrase, the latest prompt with a phrase, a reason ...
    assert generated.candidates and set(generated.candidates) <= {f"Solve it. {p}" for p in PHRASES}
    assert extract_reply(summary) in {f"Add. {p}" for p in PHRASES}
    assert extract_reply(feedback) in FEEDBACK_REASONS
    assert server.stats()["roles"] == {"optimizer": 2, "summarize": 1, "feedback": 1}
    # ... to the reworded requests.
    texts = {r["role"]: r["text"] for r in log}
    assert texts["optimizer"].startswith(REWORDED["task"])
    assert texts["summarize"].startswith(REWORDED["summarize_prompts_task"])
    assert texts["feedback"].startswith(REWORDED["feedback_task"])
