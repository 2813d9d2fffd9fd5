"""Hedged requests: cut the tail that slow or stalled replies make.

A call still unanswered after a high percentile of recent latencies gets a second, identical request; the first
answer wins and the other request is cancelled (its connection closed, its slot freed). Latencies are those of
answered requests of this client; no hedge is sent before `min_samples` of them, nor sooner than `min_delay_s`,
and at most `max_extra_fraction` hedges per call, so an endpoint that is slow for everyone is not asked twice as
often. Off by default: a hedge may be billed.

In the stack it sits just below retry: each attempt may be hedged, a failed race is retried as a failed attempt
is, and each of the two requests goes through the balancer (so it may reach another endpoint), the limits and the
attempt counters, which count both. `counters.hedges` says how many were `sent`, how often the hedge `won`, and
how many losers were `cancelled`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable

from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient

LATENCY_WINDOW = 256  # recent answered requests the percentile is taken over


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank q-th percentile (0 < q < 100) of non-empty `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


class HedgedClient:
    """Sends a second request for a call that has waited longer than the `percentile` of recent latencies."""

    def __init__(
        self,
        inner: LLMClient,
        *,
        counters: UsageCounters,
        percentile: float = 95.0,
        min_delay_s: float = 0.5,
        min_samples: int = 20,
        max_extra_fraction: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner = inner
        self.counters = counters
        self.percentile = percentile
        self.min_delay_s = min_delay_s
        self.min_samples = min_samples
        self.max_extra_fraction = max_extra_fraction
        self._clock = clock
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._calls = 0
        self._hedges = 0

    def hedge_delay(self) -> float | None:
        """How long a call waits before its hedge, or None while there are too few latencies to judge."""
        if len(self._latencies) < self.min_samples:
            return None
        return max(self.min_delay_s, percentile(list(self._latencies), self.percentile))

    def _may_hedge(self) -> bool:
        return self._hedges + 1 <= self.max_extra_fraction * self._calls

    async def _timed(self, request: ChatRequest) -> ChatResponse:
        started = self._clock()
        response = await self.inner.complete(request)
        self._latencies.append(self._clock() - started)
        return response

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self._calls += 1
        delay = self.hedge_delay()
        if delay is None:
            return await self._timed(request)
        primary = asyncio.ensure_future(self._timed(request))
        racers = {primary}
        try:
            done, _ = await asyncio.wait(racers, timeout=delay)
            if done or not self._may_hedge():
                return await primary
            self._hedges += 1
            self.counters.record_hedge("sent")
            hedge = asyncio.ensure_future(self._timed(request))
            racers.add(hedge)
            error: BaseException | None = None
            while racers:
                done, racers = await asyncio.wait(racers, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    if task.exception() is None:
                        if task is hedge:
                            self.counters.record_hedge("won")
                        for loser in racers:
                            loser.cancel()
                            self.counters.record_hedge("cancelled")
                        return task.result()
                    error = task.exception()
            assert error is not None
            raise error  # both failed: the retry layer above decides, as for one failed attempt
        finally:
            for task in racers:  # a loser, or both when we were cancelled: wait until they have let go
                task.cancel()
            await asyncio.gather(*racers, return_exceptions=True)

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
