"""Usage counters and the two layers that fill them.

Counting happens at two heights of the stack, because the two questions differ:

- `AccountingClient` (outermost) sees what callers asked for: `calls` and `cache_hits`.
- `AttemptCountingClient` (just above the transport, below retry and limits) sees what the endpoint
  saw: every attempt, retried ones included, its tokens and the kind of each failure. So `requests`,
  tokens and `errors` match the endpoint's own counters (the fake server's /stats).

`retries` is filled by the retry layer through `counters.record_retry` (its `on_retry` callback).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpo_ray.llm.errors import (
    EndpointUnavailable,
    FatalLLMError,
    LLMError,
    MalformedResponse,
    RateLimited,
    RetryableLLMError,
)
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, LLMClient


def error_kind(err: BaseException) -> str:
    """A short name for an error, for counters and logs: the transport's `kind`, else one from the class."""
    kind = getattr(err, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    if isinstance(err, RateLimited):
        return "rate_limited"
    if isinstance(err, MalformedResponse):
        return "malformed"
    if isinstance(err, RetryableLLMError):
        return "retryable"
    if isinstance(err, FatalLLMError):
        return "fatal"
    if isinstance(err, EndpointUnavailable):
        return "unavailable"
    if isinstance(err, LLMError):
        return "llm_error"
    return type(err).__name__


@dataclass
class UsageCounters:
    """What one client stack (one role in one process) has spent. Merge snapshots across actors."""

    calls: int = 0  # completions asked for by callers, cache hits included
    requests: int = 0  # HTTP requests sent to the endpoint, retried attempts included
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed endpoint attempts, by error_kind

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def record_retry(self, kind: str) -> None:
        """The retry layer's `on_retry` callback."""
        self.retries += 1

    def record_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "errors": dict(sorted(self.errors.items())),
        }

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> UsageCounters:
        return cls(
            calls=int(snap.get("calls", 0)),
            requests=int(snap.get("requests", 0)),
            prompt_tokens=int(snap.get("prompt_tokens", 0)),
            completion_tokens=int(snap.get("completion_tokens", 0)),
            cache_hits=int(snap.get("cache_hits", 0)),
            retries=int(snap.get("retries", 0)),
            errors={str(k): int(v) for k, v in (snap.get("errors") or {}).items()},
        )

    def merge(self, other: UsageCounters | dict[str, Any]) -> UsageCounters:
        """Add `other` (counters or a snapshot) into self; returns self."""
        if isinstance(other, dict):
            other = UsageCounters.from_snapshot(other)
        self.calls += other.calls
        self.requests += other.requests
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.cache_hits += other.cache_hits
        self.retries += other.retries
        for kind, n in other.errors.items():
            self.errors[kind] = self.errors.get(kind, 0) + n
        return self


class AccountingClient:
    """Outermost layer: counts calls and cache hits."""

    def __init__(self, inner: LLMClient, *, counters: UsageCounters) -> None:
        self.inner = inner
        self.counters = counters

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.counters.calls += 1
        response = await self.inner.complete(request)
        if response.cached:
            self.counters.cache_hits += 1
        return response

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()


class AttemptCountingClient:
    """Just above the transport: counts each endpoint attempt, its tokens, and failures by kind."""

    def __init__(self, inner: LLMClient, *, counters: UsageCounters) -> None:
        self.inner = inner
        self.counters = counters

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.counters.requests += 1
        try:
            response = await self.inner.complete(request)
        except LLMError as e:
            self.counters.record_error(error_kind(e))
            raise
        self.counters.prompt_tokens += response.usage.prompt_tokens
        self.counters.completion_tokens += response.usage.completion_tokens
        return response

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
