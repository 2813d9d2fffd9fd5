"""The response cache: on disk, shared by processes, never holding secrets."""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import pickle
import sqlite3

import pytest

from gpo_ray.llm.cache import CachedClient, ResponseCache
from gpo_ray.llm.errors import RetryableLLMError
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage, user_message
from tests.fakes import ScriptedClient


def ask(text: str, **kw) -> ChatRequest:
    return ChatRequest(messages=user_message(text), **kw)


async def test_a_miss_asks_and_stores_and_a_hit_is_marked_cached(tmp_path):
    inner = ScriptedClient(["first answer"])
    client = CachedClient(inner, cache=ResponseCache(tmp_path), model="m")
    miss = await client.complete(ask("q"))
    hit = await client.complete(ask("q"))
    assert (miss.text, miss.cached) == ("first answer", False)
    assert (hit.text, hit.cached, hit.usage, hit.finish_reason) == ("first answer", True, miss.usage, "stop")
    assert len(inner.requests) == 1


async def test_the_cache_survives_a_restart(tmp_path):
    first = CachedClient(ScriptedClient(["remembered"]), cache=ResponseCache(tmp_path), model="m")
    await first.complete(ask("q", seed=7))
    first.cache.close()
    inner = ScriptedClient(["not asked"])
    second = CachedClient(inner, cache=ResponseCache(tmp_path), model="m")
    response = await second.complete(ask("q", seed=7))
    assert (response.text, response.cached) == ("remembered", True)
    assert inner.requests == []


async def test_model_sample_index_and_parameters_are_part_of_the_key(tmp_path):
    inner = ScriptedClient(["a", "b", "c", "d"])
    cache = ResponseCache(tmp_path)
    await CachedClient(inner, cache=cache, model="m1").complete(ask("q"))
    await CachedClient(inner, cache=cache, model="m2").complete(ask("q"))
    await CachedClient(inner, cache=cache, model="m1").complete(ask("q", sample_index=1))
    await CachedClient(inner, cache=cache, model="m1").complete(ask("q", temperature=1.0))
    assert len(inner.requests) == 4 and len(cache) == 4


async def test_errors_are_not_cached(tmp_path):
    inner = ScriptedClient([RetryableLLMError("HTTP 500"), "recovered"])
    client = CachedClient(inner, cache=ResponseCache(tmp_path), model="m")
    with pytest.raises(RetryableLLMError):
        await client.complete(ask("q"))
    assert (await client.complete(ask("q"))).text == "recovered"


async def test_identical_requests_in_flight_are_asked_once(tmp_path):
    inner = ScriptedClient(["shared"])
    inner.release.clear()
    client = CachedClient(inner, cache=ResponseCache(tmp_path), model="m")
    calls = [asyncio.create_task(client.complete(ask("same"))) for _ in range(5)]
    for _ in range(50):
        await asyncio.sleep(0)
    inner.release.set()
    responses = await asyncio.gather(*calls)
    assert len(inner.requests) == 1
    assert {r.text for r in responses} == {"shared"}
    assert sorted(r.cached for r in responses) == [False, True, True, True, True]


async def test_a_cancelled_leader_does_not_cancel_the_waiters(tmp_path):
    inner = ScriptedClient(["second try"])
    inner.release.clear()
    client = CachedClient(inner, cache=ResponseCache(tmp_path), model="m")
    leader = asyncio.create_task(client.complete(ask("same")))
    for _ in range(20):
        await asyncio.sleep(0)
    waiter = asyncio.create_task(client.complete(ask("same")))
    for _ in range(20):
        await asyncio.sleep(0)
    leader.cancel()
    for _ in range(20):
        await asyncio.sleep(0)
    inner.release.set()
    response = await waiter
    assert response.text == "second try" and leader.cancelled()


async def test_the_stored_value_holds_only_the_reply(tmp_path):
    cache = ResponseCache(tmp_path)
    await cache.put("k", ChatResponse(text="t", usage=Usage(3, 4), finish_reason="stop"))
    cache.close()
    [(key, value)] = sqlite3.connect(cache.path).execute("SELECT key, value FROM responses").fetchall()
    assert key == "k"
    assert set(json.loads(value)) == {"text", "prompt_tokens", "completion_tokens", "finish_reason"}


def test_pickles_as_its_directory_only(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put_sync("k", ChatResponse(text="t"))
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.directory == cache.directory
    assert copy.get_sync("k").text == "t"


def _write_many(cache: ResponseCache, worker: int, n: int) -> None:
    for i in range(n):
        cache.put_sync(f"w{worker}-{i}", ChatResponse(text=f"{worker}:{i}"))
        cache.get_sync(f"w{(worker + 1) % 3}-{i}")


def test_several_processes_share_one_cache(tmp_path):
    cache = ResponseCache(tmp_path)
    cache.put_sync("parent", ChatResponse(text="p"))  # the parent's connection is open before the fork
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_write_many, args=(cache, w, 40)) for w in range(3)]
    for p in workers:
        p.start()
    for p in workers:
        p.join(timeout=60)
    assert [p.exitcode for p in workers] == [0, 0, 0]
    assert len(cache) == 3 * 40 + 1
    assert cache.get_sync("w2-39").text == "2:39"
    assert sqlite3.connect(cache.path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
