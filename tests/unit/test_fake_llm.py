"""The scripted fake endpoint: deterministic replies for both roles, faults, counters."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import subprocess
import sys
import urllib.request

import aiohttp
import pytest

from gpo_ray.core import paper_text
from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import (
    PURPOSE_HEADER,
    ROLE_HEADER,
    ChatMessage,
    ChatRequest,
    user_message,
)
from gpo_ray.tasks.types import Example
from gpo_ray.testing import (
    FakeLLMConfig,
    FakeLLMServer,
    ProcessFake,
    ScriptedLLM,
    ThreadedFake,
    answer_key_from_examples,
    running_fake_llm,
)
from gpo_ray.testing.arithmetic import solve_arithmetic
from gpo_ray.testing.routing import Route, route
from gpo_ray.testing.scripted import (
    AnswerKeyIndex,
    current_prompt_of,
    propose_candidate,
    wrong_answer,
)
from gpo_ray.vocabulary import Purpose

PHRASES = ["Think step by step.", "Be careful.", "Answer briefly."]


def meta_prompt(prompt: str) -> str:
    return f"Here is a prompt to improve.\n<current_prompt>\n{prompt}\n</current_prompt>\nWrite a better one."


async def chat(session: aiohttp.ClientSession, url: str, content: str, **body) -> tuple[int, dict | str]:
    payload = {"model": "fake-model", "messages": [{"role": "user", "content": content}], **body}
    async with session.post(f"{url}/chat/completions", json=payload) as r:
        text = await r.text()
        try:
            return r.status, json.loads(text)
        except ValueError:
            return r.status, text


def reply_text(body: dict) -> str:
    return body["choices"][0]["message"]["content"]


# --- the scripted models, as pure functions ---


def test_the_optimizer_appends_a_phrase_not_yet_in_the_prompt():
    candidate = propose_candidate("Solve it.", seed=1, phrases=PHRASES)
    assert candidate.startswith("Solve it. ") and candidate.removeprefix("Solve it. ") in PHRASES
    assert propose_candidate("Solve it.", seed=1, phrases=PHRASES) == candidate
    full = "Solve it. " + " ".join(PHRASES)
    assert propose_candidate(full, seed=1, phrases=PHRASES) == full  # nothing left to add
    seeds = {propose_candidate("Solve it.", seed=s, phrases=PHRASES) for s in range(30)}
    assert len(seeds) == len(PHRASES)  # different seeds explore different edits


def test_the_current_prompt_block_is_read_byte_exactly():
    assert current_prompt_of(meta_prompt("Line one.\nLine two.")) == "Line one.\nLine two."
    assert current_prompt_of(meta_prompt("")) == ""
    assert current_prompt_of("no block here") is None
    assert current_prompt_of("<current_prompt>Solve it.</current_prompt>") is None


def test_the_answer_key_finds_the_longest_question_in_the_text():
    long_q = "Which of the following is the largest planet in the solar system?\n(A) Mars\n(B) Jupiter"
    index = AnswerKeyIndex({long_q: "(B)", "largest planet": "short", "2+2": "4"})
    assert index.find(f"Q: {long_q}\nA: Let's think.") == (long_q, "(B)")
    assert index.find("the largest planet?") == ("largest planet", "short")
    assert index.find("nothing known") is None


def test_answer_key_from_examples_accepts_pairs_and_examples():
    key = answer_key_from_examples([(" What? ", "x"), Example(input="Why?", answers=("y", "z"))])
    assert key == {"What?": "x", "Why?": "y"}


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("What is 3 + 4?", "7"),
        ("((-1 + 2 + 9 * 5) - (-2 + -4 + -4 * -7)) =", "24"),
        ("What is 12 divided by 4? Let's solve the problem.", "3"),
        ("Compute 7 times 6.", "42"),
        ("What is 1 / 4?", "0.25"),
    ],
)
def test_simple_arithmetic_is_solved(text, answer):
    assert solve_arithmetic(text)[1] == answer


def test_no_arithmetic_no_answer():
    assert solve_arithmetic("Is the sky blue? Think step-by-step.") is None
    assert solve_arithmetic("What is 3 / 0?") is None


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("(A)", "(B)"),
        ("(C)", "(A)"),
        ("24", "25"),
        ("-3", "-2"),
        ("2.5", "3.5"),
        ("Yes", "No"),
        ("false", "true"),
        ("valid", "invalid"),
        ("bird", "not bird"),
    ],
)
def test_a_wrong_answer_differs_from_the_right_one(right, wrong):
    assert wrong_answer(right) == wrong


# --- routing: the metadata first, the prose only without it ---


def test_the_purpose_routes_a_request_whatever_its_prose_says():
    # A candidate request that opens like the official feedback request: sniffing takes it for feedback.
    text = paper_text.FEEDBACK_REQUEST.split("\n")[0] + "\n" + meta_prompt("Solve it.")
    sniffed = ChatRequest(messages=user_message(text))
    assert route(sniffed) == Route(Purpose.FEEDBACK, "content")
    tagged = ChatRequest(messages=user_message(text), purpose=Purpose.CANDIDATES)
    assert route(tagged) == Route(Purpose.CANDIDATES, "purpose")
    llm = ScriptedLLM(FakeLLMConfig(optimizer_phrases=PHRASES))
    assert llm.reply(sniffed).role == "feedback"
    reply = llm.reply(tagged)
    assert (reply.role, reply.routed_by) == ("optimizer", "purpose")
    assert reply.text.startswith("<START>Solve it. ")
    # Where a candidate request shows no current prompt, the candidate is a phrase alone (not "I don't know.").
    bare = llm.reply(ChatRequest(messages=user_message("Write a prompt."), purpose=Purpose.CANDIDATES))
    assert bare.text.removeprefix("<START>").removesuffix("<END>") in PHRASES


def test_a_role_without_a_purpose_names_the_model_and_the_prose_tells_the_optimizers_requests_apart():
    question = ChatRequest(messages=user_message("What is 2 + 3?"))
    second = ChatRequest(messages=(*question.messages, ChatMessage("assistant", "5"), ChatMessage("user", "Number?")))
    assert route(question, role="task_model") == Route(Purpose.ANSWER, "role")
    assert route(second, role="task_model") == Route(Purpose.SECOND_TURN, "role")
    assert route(second) == Route(Purpose.SECOND_TURN, "content")
    assert route(question, role="judge") == Route(Purpose.JUDGE, "role")
    assert route(question, role="optimizer") == Route(Purpose.CANDIDATES, "role")
    feedback = ChatRequest(messages=user_message("Why?\n<wrong_examples>\nQ\n</wrong_examples>"))
    assert route(feedback, role="optimizer") == Route(Purpose.FEEDBACK, "role")
    # The task model's question that quotes a meta-prompt block is still the task model's, by its role.
    quoting = ChatRequest(messages=user_message(meta_prompt("Solve it.")))
    assert route(quoting) == Route(Purpose.CANDIDATES, "content")
    assert route(quoting, role="task_model") == Route(Purpose.ANSWER, "role")


async def test_the_fake_reads_the_metadata_headers_records_them_and_refuses_unknown_values():
    text = meta_prompt("Solve it.")
    async with running_fake_llm(record_requests=True, optimizer_phrases=PHRASES) as server, \
            aiohttp.ClientSession() as session:

        async def post(headers: dict[str, str]) -> tuple[int, dict]:
            payload = {"model": "m", "messages": [{"role": "user", "content": text}]}
            async with session.post(f"{server.base_url}/chat/completions", json=payload, headers=headers) as r:
                return r.status, await r.json()

        assert (await post({}))[0] == 200  # by hand: sniffed
        status, body = await post({ROLE_HEADER: "task_model", PURPOSE_HEADER: "answer"})
        assert status == 200 and reply_text(body) == "I don't know."  # the quoted block does not make it a candidate
        assert (await post({ROLE_HEADER: "judge"}))[0] == 200
        for bad in ({PURPOSE_HEADER: "candidate"}, {ROLE_HEADER: "task"}):
            status, body = await post(bad)
            assert status == 400 and "X-GPO-" in body["error"]["message"]
        log, stats = server.requests_log(), server.stats()
    assert [(r["sent_role"], r["sent_purpose"], r["routed_by"], r["role"]) for r in log] == [
        (None, None, "content", "optimizer"), ("task_model", "answer", "purpose", "task"),
        ("judge", None, "role", "judge")]
    assert stats["status"] == {"200": 3, "400": 2} and stats["roles"] == {"optimizer": 1, "task": 1, "judge": 1}


# --- over HTTP ---


async def test_task_accuracy_follows_the_skill_phrases_and_is_deterministic():
    questions = {f"Question number {i}: what is the code word?": f"word{i}" for i in range(200)}
    config = FakeLLMConfig(answer_key=questions, base_accuracy=0.3, skill_phrases={"step by step": 0.4})
    async with running_fake_llm(config) as server, aiohttp.ClientSession() as session:

        async def accuracy(prompt: str) -> tuple[float, list[str]]:
            replies = []
            for q, a in questions.items():
                status, body = await chat(session, server.base_url, f"{q}\n{prompt}", seed=0)
                assert status == 200
                replies.append(reply_text(body))
            right = sum(r.endswith(f"The answer is {a}.") for r, a in zip(replies, questions.values(), strict=True))
            return right / len(questions), replies

        plain, plain_replies = await accuracy("Answer.")
        skilled, _ = await accuracy("Think step by step.")
        again, again_replies = await accuracy("Answer.")
        status, body = await chat(session, server.base_url, "What colour is a zebra?")
    assert 0.2 < plain < 0.4 and 0.6 < skilled < 0.8
    assert again_replies == plain_replies
    assert reply_text(body) == "I don't know."
    assert server.stats()["roles"] == {"task": 601}


async def test_optimizer_requests_get_a_candidate_in_markers_json_or_bare():
    async with running_fake_llm(optimizer_phrases=PHRASES) as server, aiohttp.ClientSession() as session:
        _, marked = await chat(session, server.base_url, meta_prompt("Solve it."), seed=4)
        schema = {"type": "object", "properties": {"prompt": {"type": "string"}}}
        _, as_json = await chat(
            session, server.base_url, meta_prompt("Solve it."), seed=4,
            response_format={"type": "json_schema", "json_schema": {"name": "c", "schema": schema, "strict": True}},
        )
        _, bare = await chat(session, server.base_url, meta_prompt("Solve it.") + " [[fault:nomarkers]]", seed=4)
    candidate = propose_candidate("Solve it.", seed=4, phrases=PHRASES)
    assert reply_text(marked) == f"<START>{candidate}<END>"
    assert json.loads(reply_text(as_json)) == {"prompt": candidate}
    assert reply_text(bare) == candidate
    stats = server.stats()
    assert stats["roles"] == {"optimizer": 3} and stats["faults"] == {"nomarkers": 1}


async def test_in_process_the_scripted_llm_replies_as_the_server_does():
    config = FakeLLMConfig(optimizer_phrases=PHRASES, answer_key={"Is the sky blue?": "Yes"}, base_accuracy=0.5)
    llm = ScriptedLLM(config)
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    asks = [
        dict(content=meta_prompt("Solve it."), seed=4),
        dict(content="Is the sky blue? Think step by step.", seed=1),
        dict(content="What is 6 times 7?", seed=2, max_tokens=3),
        dict(content="What is 6 times 7?", seed=2, stop=["The answer"]),
        dict(content="Is the sky blue?", seed=3, json_schema=schema),
    ]
    async with running_fake_llm(config) as server, aiohttp.ClientSession() as session:
        for ask in asks:
            content, extra = ask.pop("content"), dict(ask)
            body = {k: v for k, v in extra.items() if k != "json_schema"}
            if "json_schema" in extra:
                body["response_format"] = {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}
            _, over_http = await chat(session, server.base_url, content, **body)
            request = ChatRequest(user_message(content), **{**extra, "stop": tuple(extra.get("stop", ())) or None})
            in_process = await llm.complete(request)
            assert in_process.text == reply_text(over_http)
            assert in_process.finish_reason == over_http["choices"][0]["finish_reason"]
            assert in_process.usage.prompt_tokens == over_http["usage"]["prompt_tokens"]
            assert in_process.usage.completion_tokens == over_http["usage"]["completion_tokens"]
    assert dict(llm.calls) == server.stats()["roles"] == {"optimizer": 1, "task": 4}


def test_the_threaded_and_the_process_hosts_serve_and_count():
    payload = json.dumps({"model": "m", "messages": [{"role": "user", "content": "What is 1 + 1?"}]}).encode()

    def ask(base_url: str) -> str:
        request = urllib.request.Request(f"{base_url}/chat/completions", data=payload,
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as r:
            return reply_text(json.loads(r.read()))

    with ThreadedFake(FakeLLMConfig(record_timeline=True)) as threaded, ProcessFake(FakeLLMConfig()) as spawned:
        assert ask(threaded.base_url) == ask(spawned.base_url)
        assert threaded.stats()["completed"] == spawned.stats()["completed"] == 1
        assert [role for _, _, role in threaded.timeline()] == ["task"]
        spawned.reset()
        assert spawned.stats()["requests"] == 0
    assert threaded.stats()["completed"] == 1, "the counters stay readable after the host is closed"


async def test_configured_faults_hit_the_first_requests_then_stop():
    fake = FakeLLMConfig(fail_first_n={"429": 2, "503": 1}, retry_after_s=2)
    async with running_fake_llm(fake) as server, aiohttp.ClientSession() as session:
        statuses = []
        for i in range(5):
            payload = {"model": "m", "messages": [{"role": "user", "content": f"What is {i} + 1?"}]}
            async with session.post(f"{server.base_url}/chat/completions", json=payload) as r:
                statuses.append((r.status, r.headers.get("Retry-After"), r.headers.get("retry-after-ms")))
    limited = (429, "2", "2000")
    assert statuses == [limited, limited, (503, "2", "2000"), (200, None, None), (200, None, None)]
    assert server.stats()["faults"] == {"429": 2, "503": 1}


async def test_fault_rates_are_reproducible_and_a_repeat_can_succeed():
    async def run() -> list[int]:
        async with running_fake_llm(error_rate_500=0.5) as server, aiohttp.ClientSession() as session:
            return [(await chat(session, server.base_url, f"What is {i % 10} + 1?"))[0] for i in range(40)]

    first, second = await run(), await run()
    assert first == second
    assert 5 < first.count(500) < 35 and first.count(200) > 0


async def test_a_once_marker_fails_only_the_first_time_a_request_is_seen():
    async with running_fake_llm() as server, aiohttp.ClientSession() as session:
        codes = [(await chat(session, server.base_url, "What is 1 + 1? [[fault:once:500]]"))[0] for _ in range(3)]
        other_seed = (await chat(session, server.base_url, "What is 1 + 1? [[fault:once:500]]", seed=9))[0]
    assert codes == [500, 200, 200] and other_seed == 500
    stats = server.stats()
    assert stats["repeated_requests"] == 2 and stats["duplicates"] == 1 and stats["unique_requests"] == 2


async def test_the_service_slots_cap_concurrency_and_excess_requests_queue():

    async with running_fake_llm(concurrency=2) as server, aiohttp.ClientSession() as session:
        server.pause()
        calls = [asyncio.create_task(chat(session, server.base_url, f"What is {i} + 1?")) for i in range(6)]
        await asyncio.wait_for(server.wait_in_service(2), timeout=30)
        await asyncio.sleep(0.05)
        in_service = server.stats()["in_service"]
        server.resume()
        results = await asyncio.gather(*calls)
    assert in_service == 2 and server.stats()["peak_in_service"] == 2
    assert [status for status, _ in results] == [200] * 6


async def test_embeddings_models_health_stats_and_reset():
    async with running_fake_llm(embedding_dim=16, model_name="fake-x") as server, aiohttp.ClientSession() as session:
        root = server.base_url.removesuffix("/v1")
        texts = ["red apple", "red apple", "blue car"]
        async with session.post(f"{server.base_url}/embeddings", json={"model": "e", "input": texts}) as r:
            vectors = [d["embedding"] for d in (await r.json())["data"]]
        async with session.get(f"{server.base_url}/models") as r:
            models = await r.json()
        async with session.get(f"{root}/health") as r:
            health = await r.json()
        await chat(session, server.base_url, "What is 1 + 1?")
        async with session.get(f"{root}/stats") as r:
            stats = await r.json()
        async with session.post(f"{root}/reset") as r:
            assert r.status == 200
    assert len(vectors[0]) == 16 and vectors[0] == vectors[1] != vectors[2]
    assert all(math.isclose(sum(x * x for x in v), 1.0) for v in vectors)
    assert models["data"][0]["id"] == "fake-x" and health == {"status": "ok"}
    assert stats["requests"] == 1 and stats["embedding_requests"] == 1
    assert server.stats()["requests"] == 0


async def test_binds_to_loopback_only():
    with pytest.raises(ValueError, match="loopback"):
        await FakeLLMServer().start(host="0.0.0.0")


def test_config_from_file_and_its_errors(tmp_path):
    good = tmp_path / "fake.yaml"
    good.write_text("base_accuracy: 0.9\nfail_first_n: {'429': 1}\nlatency_s: [0.1, 0.2]\n")
    config = FakeLLMConfig.from_file(good)
    assert config.base_accuracy == 0.9 and config.latency_s == (0.1, 0.2)
    bad = tmp_path / "bad.yaml"
    bad.write_text("fail_first_n: {'teapot': 1}\n")
    with pytest.raises(ConfigError, match="teapot"):
        FakeLLMConfig.from_file(bad)


def test_run_fake_llm_serves_until_interrupted():
    script = (
        "from gpo_ray.testing.server import run_fake_llm\n"
        "run_fake_llm(host='127.0.0.1', port=0, on_ready=lambda url: print('READY', url, flush=True))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        url = next(line.split()[1] for line in proc.stdout if line.startswith("READY"))
        with urllib.request.urlopen(f"{url.removesuffix('/v1')}/health", timeout=10) as r:
            assert r.status == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# --- faults switched on at run time (POST /faults; benchmarks/chaos.py) ---


async def test_timed_fault_rates_hit_every_request_until_replaced_and_bad_ones_are_refused():
    async with running_fake_llm() as server, aiohttp.ClientSession() as session:
        root = server.base_url.removesuffix("/v1")
        before = (await chat(session, server.base_url, "What is 1 + 1?"))[0]
        async with session.post(f"{root}/faults", json={"rates": {"500": 1.0}, "for_s": 600}) as r:
            state = await r.json()
        during = [(await chat(session, server.base_url, f"What is {i} + 2?"))[0] for i in range(3)]
        async with session.post(f"{root}/faults", json={"rates": {"teapot": 1.0}, "for_s": 5}) as r:
            refused = r.status, (await r.json())["error"]["message"]
        async with session.post(f"{root}/faults", json={"rates": {}}) as r:
            assert (await r.json())["rates"] == {}
        after = (await chat(session, server.base_url, "What is 3 + 3?"))[0]
    assert (before, during, after) == (200, [500, 500, 500], 200)
    assert state["rates"] == {"500": 1.0} and 0 < state["rates_left_s"] <= 600
    assert refused[0] == 400 and "teapot" in refused[1]
    assert server.stats()["faults"] == {"500": 3}


async def test_timed_fault_rates_end_by_themselves():
    async with running_fake_llm() as server, aiohttp.ClientSession() as session:
        await server.set_timed_faults(rates={"429": 1.0}, for_s=0.2)
        first = (await chat(session, server.base_url, "What is 1 + 1?"))[0]
        await asyncio.sleep(0.3)  # past the window
        later = (await chat(session, server.base_url, "What is 1 + 1?"))[0]
    assert (first, later) == (429, 200)


async def test_a_503_outage_answers_503_then_the_endpoint_is_back():
    async with running_fake_llm() as server, aiohttp.ClientSession() as session:
        await server.set_timed_faults(outage_s=0.3, outage="503")
        during = (await chat(session, server.base_url, "What is 1 + 1?"))[0]
        await asyncio.sleep(0.4)
        after = (await chat(session, server.base_url, "What is 1 + 1?"))[0]
    assert (during, after) == (503, 200)
    assert server.stats()["faults"] == {"outage": 1}


async def test_a_refusing_outage_closes_the_port_then_listens_again_on_the_same_one():
    async with running_fake_llm() as server:
        async with aiohttp.ClientSession() as session:  # a keep-alive connection open before the outage
            assert (await chat(session, server.base_url, "What is 1 + 1?"))[0] == 200
            await server.set_timed_faults(outage_s=1.0)
            with pytest.raises(aiohttp.ClientError):  # the open connection is cut
                await chat(session, server.base_url, "What is 2 + 2?")
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectorError):  # and new ones are refused
                await chat(session, server.base_url, "What is 2 + 2?")
            for _ in range(200):  # back after the outage, at the same URL (a guard, not a timing assumption)
                try:
                    status = (await chat(session, server.base_url, "What is 2 + 2?"))[0]
                    break
                except aiohttp.ClientConnectorError:
                    await asyncio.sleep(0.1)
        assert status == 200
        assert server.stats()["faults"] == {"outage": 1}


def test_the_process_host_switches_faults_over_http():
    with ProcessFake(FakeLLMConfig()) as spawned:
        state = spawned.set_faults(rates={"malformed": 1.0}, for_s=600)
        request = urllib.request.Request(
            f"{spawned.base_url}/chat/completions", headers={"Content-Type": "application/json"},
            data=json.dumps({"model": "m", "messages": [{"role": "user", "content": "What is 1 + 1?"}]}).encode())
        with urllib.request.urlopen(request, timeout=30) as r:
            body = r.read()
        assert state["rates"] == {"malformed": 1.0} and spawned.port > 0
        assert body == b"{this is not json"
        assert spawned.stats()["faults"] == {"malformed": 1}
