"""Retry with exponential backoff and full jitter; honours the server's Retry-After.

Only errors marked `retryable` are retried; fatal ones pass straight through. A stalled reply is retried at once: the
silence it was cut after already spaced the attempts. When the attempts run
out, `EndpointUnavailable` names the endpoint, the model and the last error, so the run can stop
cleanly and be resumed later.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping

import structlog

from gpo_ray.llm.accounting import error_kind
from gpo_ray.llm.errors import EndpointUnavailable, LLMError, RateLimited, StalledResponse
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient

# A Retry-After longer than this is treated as this: a server asking for an hour should stop the run
# through the attempt bound, not hang it.
RETRY_AFTER_CEILING_S = 600.0


def backoff_delay(attempt: int, *, base_delay_s: float, max_delay_s: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(max, base * 2**(attempt-1))] for the attempt-th retry (1-based)."""
    ceiling = min(max_delay_s, base_delay_s * (2 ** (attempt - 1)))
    return rng.uniform(0.0, ceiling)


class RetryingClient:
    """Retries retryable LLM errors up to `max_attempts` attempts in all (1 = no retry).

    A rate limit (429) asks the client to slow down, not to give up: a call that keeps getting 429 is retried beyond
    `max_attempts` until it has waited `rate_limited_for_s` seconds on them, so a burst of rate limiting that outlasts
    a few quick backoffs slows a run instead of stopping it."""

    def __init__(
        self,
        inner: LLMClient,
        *,
        max_attempts: int,
        base_delay_s: float = 0.5,
        max_delay_s: float = 30.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[str], None] | None = None,
        log_context: Mapping[str, str] | None = None,
        rate_limited_for_s: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.inner = inner
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.rate_limited_for_s = rate_limited_for_s
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._on_retry = on_retry
        self._log = structlog.get_logger(__name__).bind(**dict(log_context or {}))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        attempt = 1
        waited_rate_limited = 0.0
        while True:
            try:
                return await self.inner.complete(request)
            except LLMError as e:
                if not e.retryable:
                    raise
                kind = error_kind(e)
                still_slowing_down = isinstance(e, RateLimited) and waited_rate_limited < self.rate_limited_for_s
                if attempt >= self.max_attempts and not still_slowing_down:
                    self._log.warning(
                        "llm_gave_up", attempts=attempt, error_kind=kind, endpoint=e.endpoint, model=e.model
                    )
                    raise EndpointUnavailable(
                        f"no answer after {attempt} attempt{'s' if attempt != 1 else ''}; last error: "
                        f"{type(e).__name__}: {_bare_message(e)}",
                        endpoint=e.endpoint or getattr(self.inner, "endpoint", ""),
                        model=e.model or getattr(self.inner, "model", ""),
                    ) from e
                # A stalled attempt was cut after a silence (llm/read_pace.py): that wait is its backoff.
                delay = 0.0 if isinstance(e, StalledResponse) else backoff_delay(
                    attempt, base_delay_s=self.base_delay_s, max_delay_s=self.max_delay_s, rng=self._rng
                )
                if e.retry_after is not None:
                    delay = max(delay, min(e.retry_after, RETRY_AFTER_CEILING_S))
                self._log.info(
                    "llm_retry",
                    attempt=attempt,
                    max_attempts=self.max_attempts,
                    error_kind=kind,
                    delay_s=round(delay, 3),
                    endpoint=e.endpoint,
                    model=e.model,
                )
                if self._on_retry is not None:
                    self._on_retry(kind)
                await self._sleep(delay)
                if isinstance(e, RateLimited):
                    waited_rate_limited += delay
                attempt += 1

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


def _bare_message(e: LLMError) -> str:
    """The error's message without the `[endpoint=... model=...]` suffix (the new error adds its own)."""
    text = str(e)
    suffix = f" [endpoint={e.endpoint} model={e.model}]"
    return text[: -len(suffix)] if (e.endpoint or e.model) and text.endswith(suffix) else text
