"""Test helpers for the client layers: a fake clock, a recording sleep, a scripted inner client.

The fake endpoint itself (scripted models, server, hosts) is `gpo_ray.testing`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage
from gpo_ray.testing import ScriptedLLM


class FakeClock:
    """A monotonic clock that only moves when someone sleeps on it; records every sleep."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class RecordingSleep:
    """An `asyncio.sleep` stand-in that returns at once and records the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


class ScriptedClient:
    """An inner LLMClient: each call takes the next outcome (an exception to raise, or a reply text).

    With no outcomes left it answers "ok". Records requests, how many calls were in progress at
    once, and the clock time of each call when given a clock.
    """

    def __init__(
        self, outcomes: Iterable[BaseException | str] = (), *, clock: Any = None, usage: Usage | None = None
    ) -> None:
        self.outcomes = list(outcomes)
        self.requests: list[ChatRequest] = []
        self.call_times: list[float] = []
        self.in_progress = 0
        self.peak_in_progress = 0
        self.release = asyncio.Event()
        self.release.set()
        self._clock = clock
        self._usage = usage or Usage(prompt_tokens=3, completion_tokens=2)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        if self._clock is not None:
            self.call_times.append(self._clock())
        self.in_progress += 1
        self.peak_in_progress = max(self.peak_in_progress, self.in_progress)
        try:
            await self.release.wait()
            outcome = self.outcomes.pop(0) if self.outcomes else "ok"
            if isinstance(outcome, BaseException):
                raise outcome
            return ChatResponse(text=outcome, usage=self._usage, finish_reason="stop")
        finally:
            self.in_progress -= 1


class RecordingScriptedLLM(ScriptedLLM):
    """The scripted models in-process, keeping every request they were sent (what a meta-prompt test reads)."""

    def __init__(self, config) -> None:
        super().__init__(config)
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest):
        self.requests.append(request)
        return await super().complete(request)
