"""Client-side limits: requests in flight (a semaphore) and requests/tokens per minute (token buckets).

A slot is taken first and the rate buckets are waited on while holding it, so that a request is sent
right after it is admitted by the buckets (admitted requests never pile up behind the semaphore and
then leave in a burst). Tokens per minute are charged up front from an estimate of the request
(prompt characters / CHARS_PER_TOKEN + max_tokens) and corrected with the usage the endpoint reports; a failed
attempt keeps its estimate charged, which errs on the side of sending less to a struggling endpoint.

In the stack this layer sits *below* retry, so each attempt (what the endpoint actually sees and
rate-limits) takes a slot and bucket tokens, and a request sleeping in backoff holds no slot.

In a run the rate limits are run-wide: given a `LeasedRate` (gpo_ray/llm/run_limits.py) the client spends permits
leased from the run's limiter instead of keeping buckets of its own. `max_in_flight` stays per client: it bounds
what one actor sends at once (its connections), so the run's total is max_in_flight x the role's actors.

With `adaptive` (an AdaptiveLimit, llm/concurrency.py) the slots are `AdaptiveSlots`: as many as the limit learned
from the endpoint's latencies and 429s allows, `max_in_flight` being its cap.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Awaitable, Callable

from gpo_ray.llm.concurrency import AdaptiveLimit
from gpo_ray.llm.errors import RateLimited
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient, tokens_in_chars
from gpo_ray.llm.run_limits import LeasedRate

Clock = Callable[[], float]
_EPSILON = 1e-9
_MIN_WAIT_S = 1e-6
Sleep = Callable[[float], Awaitable[object]]


def estimate_tokens(request: ChatRequest) -> int:
    """A cheap upper-ish estimate of what a request will cost, before it is sent."""
    return tokens_in_chars(request.prompt_chars) + 1 + (request.max_tokens or 0)


class TokenBucket:
    """`rate_per_minute` tokens per minute, holding at most `capacity` (default: one second's worth, at least 1).

    Waiters are served first come, first served. A cost above the capacity is charged as the full
    capacity (otherwise it could never be admitted); `refund` may take the level below zero (a debt).
    """

    def __init__(
        self,
        rate_per_minute: float,
        *,
        capacity: float | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if rate_per_minute <= 0:
            raise ValueError("rate_per_minute must be positive")
        self.rate_per_s = rate_per_minute / 60.0
        self.capacity = capacity if capacity is not None else max(1.0, self.rate_per_s)
        self._clock = clock
        self._sleep = sleep
        self._level = self.capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._level = min(self.capacity, self._level + (now - self._updated) * self.rate_per_s)
        self._updated = now

    async def acquire(self, cost: float = 1.0) -> None:
        cost = min(cost, self.capacity)
        async with self._lock:
            while True:
                self._refill()
                if self._level >= cost - _EPSILON:  # float refill may land a hair short
                    self._level -= cost
                    return
                await self._sleep(max(_MIN_WAIT_S, (cost - self._level) / self.rate_per_s))

    def refund(self, amount: float) -> None:
        """Give back (amount > 0) or charge more (amount < 0) after the fact."""
        self._refill()
        self._level = min(self.capacity, self._level + amount)


class AdaptiveSlots:
    """A semaphore whose size follows an `AdaptiveLimit`: callers wait first come, first served while the calls in
    flight reach the limit; a grown limit admits waiters at once; after a shrink, calls finishing above the new
    limit admit no one until the calls in flight are below it. `on_limit` hears every new limit."""

    def __init__(self, limit: AdaptiveLimit, *, on_limit: Callable[[int], object] | None = None) -> None:
        self.limit = limit
        self.in_flight = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._on_limit = on_limit
        self._told = limit.limit
        if on_limit is not None:
            on_limit(self._told)

    async def acquire(self) -> None:
        if not self._waiters and self.in_flight < self.limit.limit:
            self.in_flight += 1
            return
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(admitted)
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():  # admitted, then cancelled before it could run
                self.release()
            else:
                self._waiters.remove(admitted)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._admit()

    def answered(self, latency_s: float, *, in_flight: int) -> None:
        self.limit.on_success(latency_s, in_flight=in_flight)
        self._changed()

    def overloaded(self) -> None:
        self.limit.on_overload()
        self._changed()

    def _changed(self) -> None:
        now = self.limit.limit
        if now != self._told:
            self._told = now
            if self._on_limit is not None:
                self._on_limit(now)
        self._admit()

    def _admit(self) -> None:
        while self._waiters and self.in_flight < self.limit.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self.in_flight += 1

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class LimitedClient:
    """Caps requests in flight and, optionally, requests and tokens per minute: its own buckets, or the run's
    (`run_wide`, whose limits then apply and the per-minute arguments are not used). With `adaptive`, the requests in
    flight follow its limit (at most `max_in_flight`, which must be its cap); `on_limit` hears each new limit."""

    def __init__(
        self,
        inner: LLMClient,
        *,
        max_in_flight: int,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        run_wide: LeasedRate | None = None,
        adaptive: AdaptiveLimit | None = None,
        on_limit: Callable[[int], object] | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        if adaptive is not None and adaptive.settings.max_limit != max_in_flight:
            raise ValueError("an adaptive limit's cap must be max_in_flight")
        self.inner = inner
        self.max_in_flight = max_in_flight
        self.adaptive = AdaptiveSlots(adaptive, on_limit=on_limit) if adaptive is not None else None
        self._slots: asyncio.Semaphore | AdaptiveSlots = self.adaptive or asyncio.Semaphore(max_in_flight)
        self._clock = clock
        self._run_wide = run_wide
        if run_wide is not None:
            requests_per_minute = tokens_per_minute = None
        self._rpm = TokenBucket(requests_per_minute, clock=clock, sleep=sleep) if requests_per_minute else None
        # A minute's tokens may go at once: token limits are per minute and single requests are large.
        self._tpm = (
            TokenBucket(tokens_per_minute, capacity=tokens_per_minute, clock=clock, sleep=sleep)
            if tokens_per_minute
            else None
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if self._run_wide is not None:
            return await self._complete_run_wide(self._run_wide, request)
        async with self._slots:
            if self._rpm is not None:
                await self._rpm.acquire(1.0)
            estimate = estimate_tokens(request)
            if self._tpm is not None:
                await self._tpm.acquire(estimate)
            response = await self._send(request)
            if self._tpm is not None:
                self._tpm.refund(min(estimate, self._tpm.capacity) - response.usage.total_tokens)
            return response

    async def _complete_run_wide(self, rate: LeasedRate, request: ChatRequest) -> ChatResponse:
        async with self._slots:
            estimate = estimate_tokens(request)
            await rate.acquire(estimate)
            used = None
            try:
                response = await self._send(request)
                used = response.usage.total_tokens
            finally:
                rate.release(rate.charge(estimate), used)
            return response

    async def _send(self, request: ChatRequest) -> ChatResponse:
        """The request, holding its slot; with adaptive slots, its latency or its 429 teaches the limit."""
        slots = self.adaptive
        if slots is None:
            return await self.inner.complete(request)
        in_flight, started = slots.in_flight, self._clock()
        try:
            response = await self.inner.complete(request)
        except RateLimited:
            slots.overloaded()
            raise
        slots.answered(self._clock() - started, in_flight=in_flight)
        return response

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
