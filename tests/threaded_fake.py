"""The fake endpoint on its own event loop in a thread, for tests whose driver blocks (optimize() is sync)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gpo_ray.llm.fake_server import FakeLLMConfig, FakeLLMServer


@contextmanager
def fake_llm_thread(config: FakeLLMConfig | None = None, **settings: Any) -> Iterator[FakeLLMServer]:
    server = FakeLLMServer(config or FakeLLMConfig(**settings))
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(server.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="fake-llm", daemon=True)
    thread.start()
    if not ready.wait(30):
        raise RuntimeError("fake LLM server did not start")
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
