"""Usage counters and the two layers that fill them.

Counting happens at two heights of the stack, because the two questions differ:

- `AccountingClient` (outermost) sees what callers asked for: `calls` and `cache_hits`.
- `AttemptCountingClient` (just above the transport, below retry and limits) sees what the endpoint
  saw: every attempt, retried ones included, its tokens and the kind of each failure. So `requests`,
  tokens and `errors` match the endpoint's own counters (the fake server's /stats).

`retries` is filled by the retry layer through `counters.record_retry` (its `on_retry` callback).

`concurrency` is not a count but a level: per endpoint, the adaptive limit of calls in flight (llm/concurrency.py)
now (`limit`), the lowest and highest it reached (`min`, `max`) and its cap; only with adaptive_concurrency on. Merged across actors
it is summed: what all of a role's actors may have in flight to the endpoint together.

Every count goes through a `record_*` method, which also tells the counters' optional `listener` (the live
Ray metrics, gpo_ray.observability): one place counts, so usage.json and the metrics never disagree.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class UsageListener(Protocol):
    """Told of every count as it happens (what: calls|requests|tokens|errors|retries|cache_hits|hedges|
    endpoint_requests|ejections; kind: the token kind, error kind, hedge outcome or endpoint), of latencies (what:
    call|request), and of a balanced role's endpoint taken out or back."""

    def on_count(self, what: str, amount: int = 1, *, kind: str | None = None) -> None: ...
    def on_latency(self, what: str, seconds: float) -> None: ...
    def on_endpoint_state(self, endpoint: str, *, admitted: bool) -> None: ...
    def flush(self) -> None:
        """Pass on anything held back (called whenever usage is read)."""
        ...


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
    hedges: dict[str, int] = field(default_factory=dict)  # hedged requests: sent, won (the hedge answered first), cancelled
    # A role with several endpoints (llm/balance.py): requests sent to each, and how often each was ejected.
    endpoints: dict[str, int] = field(default_factory=dict)
    ejections: dict[str, int] = field(default_factory=dict)
    # With adaptive concurrency: per endpoint, {"limit": now, "min": the lowest, "max": the highest, "cap": max_in_flight}.
    concurrency: dict[str, dict[str, int]] = field(default_factory=dict)
    listener: UsageListener | None = field(default=None, compare=False, repr=False)
    # Each balanced endpoint's state as last told (admitted or not): a listener attached later hears them (`attach`).
    endpoint_states: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

    def attach(self, listener: UsageListener) -> None:
        """Make `listener` the live metrics' listener from now on, telling it the endpoint states it missed (the
        warm start's driver clients get theirs after their balancer told the states at construction)."""
        self.listener = listener
        for endpoint, admitted in self.endpoint_states.items():
            listener.on_endpoint_state(endpoint, admitted=admitted)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def _tell(self, what: str, amount: int = 1, *, kind: str | None = None) -> None:
        if self.listener is not None and amount:
            self.listener.on_count(what, amount, kind=kind)

    def record_call(self) -> None:
        self.calls += 1
        self._tell("calls")

    def record_cache_hit(self, *, tokens: int = 0) -> None:
        """`tokens`: the cached reply's tokens, which cost nothing now (kept only per account, see AccountedCounters)."""
        self.cache_hits += 1
        self._tell("cache_hits")

    def record_request(self) -> None:
        self.requests += 1
        self._tell("requests")

    def record_tokens(self, *, prompt: int, completion: int) -> None:
        self.prompt_tokens += prompt
        self.completion_tokens += completion
        self._tell("tokens", prompt, kind="prompt")
        self._tell("tokens", completion, kind="completion")

    def record_retry(self, kind: str) -> None:
        """The retry layer's `on_retry` callback."""
        self.retries += 1
        self._tell("retries")

    def record_error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self._tell("errors", kind=kind)

    def record_hedge(self, what: str) -> None:
        """The hedging layer: a hedge `sent`, a hedge that `won`, a losing request `cancelled`."""
        self.hedges[what] = self.hedges.get(what, 0) + 1
        self._tell("hedges", kind=what)

    def record_endpoint(self, endpoint: str, *, ejected: bool = False) -> None:
        """A request sent to one of a balanced role's endpoints, or (ejected) that endpoint taken out."""
        into = self.ejections if ejected else self.endpoints
        into[endpoint] = into.get(endpoint, 0) + 1
        self._tell("ejections" if ejected else "endpoint_requests", kind=endpoint)

    def record_endpoint_state(self, endpoint: str, *, admitted: bool) -> None:
        """An endpoint admitted or ejected, as this client sees it: a state, not a count (usage.json has the
        ejections), so only the listener sees it."""
        self.endpoint_states[endpoint] = admitted
        if self.listener is not None:
            self.listener.on_endpoint_state(endpoint, admitted=admitted)

    def record_concurrency(self, endpoint: str, *, limit: int, cap: int) -> None:
        """The adaptive limit of calls in flight to `endpoint` changed (and its first value)."""
        level = self.concurrency.setdefault(endpoint, {"limit": limit, "min": limit, "max": limit, "cap": cap})
        level.update(limit=limit, min=min(level["min"], limit), max=max(level["max"], limit), cap=cap)

    def record_latency(self, what: str, seconds: float) -> None:
        """Latencies are not kept here (usage.json has no place for them); only the listener sees them."""
        if self.listener is not None:
            self.listener.on_latency(what, seconds)

    def snapshot(self) -> dict[str, Any]:
        if self.listener is not None:
            self.listener.flush()
        return {
            "calls": self.calls,
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "errors": dict(sorted(self.errors.items())),
            "hedges": dict(sorted(self.hedges.items())),
            # Only for a role with several endpoints: a run with one keeps its usage's shape.
            **({"endpoints": dict(sorted(self.endpoints.items()))} if self.endpoints else {}),
            **({"ejections": dict(sorted(self.ejections.items()))} if self.ejections else {}),
            # Only with adaptive concurrency on: a run without it keeps its usage's shape.
            **({"concurrency": {url: dict(level) for url, level in sorted(self.concurrency.items())}}
               if self.concurrency else {}),
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
            hedges={str(k): int(v) for k, v in (snap.get("hedges") or {}).items()},
            endpoints={str(k): int(v) for k, v in (snap.get("endpoints") or {}).items()},
            ejections={str(k): int(v) for k, v in (snap.get("ejections") or {}).items()},
            concurrency={str(url): {str(k): int(v) for k, v in level.items()}
                         for url, level in (snap.get("concurrency") or {}).items()},
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
        for what, n in other.hedges.items():
            self.hedges[what] = self.hedges.get(what, 0) + n
        for mine, theirs in ((self.endpoints, other.endpoints), (self.ejections, other.ejections)):
            for url, n in theirs.items():
                mine[url] = mine.get(url, 0) + n
        for url, level in other.concurrency.items():
            into = self.concurrency.setdefault(url, {})
            for k, v in level.items():
                into[k] = into.get(k, 0) + v
        return self


# The account (a sub-run of a sweep) the calls made in this context are counted for, besides the totals. Actor
# methods set it for the asyncio tasks of one call; None (a normal run) counts totals only.
CURRENT_ACCOUNT: ContextVar[str | None] = ContextVar("gpo_usage_account", default=None)


@dataclass
class AccountUsage(UsageCounters):
    """One account's counters: also the tokens of the calls the response cache answered (`cache_hit_tokens`), so
    that what a sweep's variant asked for is known however much of it another variant's requests already paid."""

    cache_hit_tokens: int = 0

    def record_cache_hit(self, *, tokens: int = 0) -> None:
        super().record_cache_hit()
        self.cache_hit_tokens += tokens

    def snapshot(self) -> dict[str, Any]:
        return {**super().snapshot(), "cache_hit_tokens": self.cache_hit_tokens}


@dataclass
class AccountedCounters(UsageCounters):
    """The totals of one client stack, and the same counts per account (`CURRENT_ACCOUNT`): the actors a sweep's
    sub-runs share count each sub-run's usage apart."""

    accounts: dict[str, AccountUsage] = field(default_factory=dict, compare=False, repr=False)

    def _account(self) -> AccountUsage | None:
        name = CURRENT_ACCOUNT.get()
        return None if name is None else self.accounts.setdefault(name, AccountUsage())

    def record_call(self) -> None:
        super().record_call()
        if (a := self._account()) is not None:
            a.record_call()

    def record_cache_hit(self, *, tokens: int = 0) -> None:
        super().record_cache_hit()
        if (a := self._account()) is not None:
            a.record_cache_hit(tokens=tokens)

    def record_request(self) -> None:
        super().record_request()
        if (a := self._account()) is not None:
            a.record_request()

    def record_tokens(self, *, prompt: int, completion: int) -> None:
        super().record_tokens(prompt=prompt, completion=completion)
        if (a := self._account()) is not None:
            a.record_tokens(prompt=prompt, completion=completion)

    def record_retry(self, kind: str) -> None:
        super().record_retry(kind)
        if (a := self._account()) is not None:
            a.record_retry(kind)

    def record_error(self, kind: str) -> None:
        super().record_error(kind)
        if (a := self._account()) is not None:
            a.record_error(kind)

    def snapshot_of(self, account: str | None) -> dict[str, Any]:
        """The totals (None), or one account's counts (zeros for an account that made no call here)."""
        if account is None:
            return self.snapshot()
        if self.listener is not None:
            self.listener.flush()
        return self.accounts.get(account, AccountUsage()).snapshot()


class AccountingClient:
    """Outermost layer: counts calls and cache hits."""

    def __init__(self, inner: LLMClient, *, counters: UsageCounters) -> None:
        self.inner = inner
        self.counters = counters

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.counters.record_call()
        started = time.monotonic()
        response = await self.inner.complete(request)
        if response.cached:
            self.counters.record_cache_hit(tokens=response.usage.total_tokens)
        else:
            self.counters.record_latency("call", time.monotonic() - started)
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
        self.counters.record_request()
        started = time.monotonic()
        try:
            response = await self.inner.complete(request)
        except LLMError as e:
            self.counters.record_latency("request", time.monotonic() - started)
            self.counters.record_error(error_kind(e))
            raise
        self.counters.record_latency("request", time.monotonic() - started)
        self.counters.record_tokens(prompt=response.usage.prompt_tokens, completion=response.usage.completion_tokens)
        return response

    async def aclose(self) -> None:
        close = getattr(self.inner, "aclose", None)
        if close is not None:
            await close()
