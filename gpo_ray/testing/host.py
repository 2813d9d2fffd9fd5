"""Where the fake server runs: in the caller's event loop, in a background thread, or in a child process.

- `running_fake_llm`: async tests, on the test's own loop.
- `ThreadedFake`: callers that block (optimize() is sync, the CLI in a subprocess); it can pause, release and
  count the requests in service, and stop and start again on the same port keeping its counters.
- `ProcessFake`: benchmarks, so that the endpoint's CPU is not the optimizer's; its counters come over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import threading
import urllib.request
from collections.abc import AsyncIterator, Callable
from typing import Any

from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.server import FakeLLMServer, run_fake_llm

WAIT_S = 120.0  # a guard against a hung test, never a timing assumption


@contextlib.asynccontextmanager
async def running_fake_llm(config: FakeLLMConfig | None = None, **settings: Any) -> AsyncIterator[FakeLLMServer]:
    """The fake server on a free loopback port for the duration of the block; `server.base_url` is its /v1 URL."""
    server = FakeLLMServer(config or FakeLLMConfig(**settings))
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


class ThreadedFake:
    """A FakeLLMServer on its own event loop in a background thread: `with ThreadedFake(config) as fake: ...`."""

    def __init__(self, config: FakeLLMConfig | None = None, *, port: int = 0) -> None:
        self.server = FakeLLMServer(config)
        self.port = port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-llm", daemon=True)
        self.thread.start()

    def _run(self, coro: Any, timeout: float = WAIT_S) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def _call(self, fn: Callable[[], Any]) -> Any:
        if self.loop.is_closed():  # closed: nothing runs on the server any more, its counters stay readable
            return fn()

        async def call() -> Any:
            return fn()

        return self._run(call())

    def start(self) -> str:
        url = self._run(self.server.start(port=self.port))
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])
        return url

    def stop(self) -> None:
        self._run(self.server.stop())

    @property
    def config(self) -> FakeLLMConfig:
        return self.server.config

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def stats(self) -> dict[str, Any]:
        return self._call(self.server.stats)

    def timeline(self) -> list[tuple[float, float, str]]:
        return self._call(self.server.timeline)

    def requests_log(self) -> list[dict]:
        return self._call(self.server.requests_log)

    def reset(self) -> None:
        self._call(self.server.reset)

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Faults for a while, from now (`FakeLLMServer.set_timed_faults`: rates, for_s, outage_s, outage)."""
        return self._run(self.server.set_timed_faults(**settings))

    def pause(self) -> None:
        self._call(self.server.pause)

    def resume(self) -> None:
        self._call(self.server.resume)

    def release(self) -> None:
        """Let the requests held now through, and hold every later one (a turnstile)."""

        def turn() -> None:
            self.server.resume()  # wakes the requests waiting now; they go on even though ...
            self.server.pause()  # ... the gate closes again before they run

        self._call(turn)

    def wait_in_service(self, n: int) -> None:
        self._run(self.server.wait_in_service(n))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def __enter__(self) -> ThreadedFake:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _serve_in_child(config: FakeLLMConfig, ready: Any, port: int = 0) -> None:
    run_fake_llm(port=port, config=config, on_ready=ready.put)


class ProcessFake:
    """The fake server in a child process (spawned): its CPU is not the caller's, and its counters come over HTTP.
    `port`: 0 for a free one; a given port brings back a killed server where its clients knew it."""

    def __init__(self, config: FakeLLMConfig, *, port: int = 0) -> None:
        self.config = config
        ctx = mp.get_context("spawn")
        ready = ctx.Queue()
        self.process = ctx.Process(target=_serve_in_child, args=(config, ready, port), daemon=True)
        self.process.start()
        self.base_url: str = ready.get(timeout=60)
        self.root = self.base_url.removesuffix("/v1")

    def _request(self, path: str, *, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.root + path, method=method, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read() or b"null")

    @property
    def port(self) -> int:
        return int(self.root.rsplit(":", 1)[1])

    def set_faults(self, **settings: Any) -> dict[str, Any]:
        """Faults for a while, from now, over POST /faults (rates, for_s, outage_s, outage "refuse" or "503")."""
        return self._request("/faults", method="POST", body=settings)

    def stats(self) -> dict[str, Any]:
        return self._request("/stats")

    def timeline(self) -> list[tuple[float, float, str]]:
        return [tuple(x) for x in self._request("/timeline")["intervals"]]

    def reset(self) -> None:
        self._request("/reset", method="POST")

    def close(self) -> None:
        self.process.terminate()
        self.process.join(10)

    def __enter__(self) -> ProcessFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
