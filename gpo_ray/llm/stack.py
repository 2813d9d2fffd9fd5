"""Assemble one role's client stack from its config.

Outermost first:

    AccountingClient       calls, cache hits
    CachedClient           a hit costs no slot, no rate token, no request
    RetryingClient         backoff; each attempt goes through the layers below again
    HedgedClient           a second request for an attempt slower than recent ones (only with hedge.enabled)
    BalancedClient         several endpoints of the role: least requests in flight (only when more than one)
    LimitedClient          in-flight slots (learned: adaptive_concurrency, or fixed), this client's share of the
                           role's max_in_flight per endpoint, RPM/TPM buckets (the run's,
                           via `permits`) - per attempt, so retries are rate-limited too
    AttemptCountingClient  requests, tokens, errors by kind - exactly what the endpoint saw
    HTTPTransport          one HTTP request (or OpenAITransport: the openai SDK)

Retry sits above the limits so that a request sleeping in backoff holds no slot, and every attempt the
endpoint sees (and rate-limits) is admitted by the buckets.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.accounting import AccountingClient, AttemptCountingClient, UsageCounters
from gpo_ray.llm.balance import BalancedClient
from gpo_ray.llm.cache import CachedClient, ResponseCache
from gpo_ray.llm.concurrency import AdaptiveLimit, LimitSettings, in_flight_share
from gpo_ray.llm.hedge import HedgedClient
from gpo_ray.llm.limits import LimitedClient
from gpo_ray.llm.protocol import ROLES, LLMClient
from gpo_ray.llm.retry import RetryingClient
from gpo_ray.llm.run_limits import LeasedRate, PermitSource
from gpo_ray.llm.transport import HTTPTransport, OpenAITransport


def build_client(
    role: LLMRoleConfig,
    *,
    role_name: str,
    base_url: str | Sequence[str],
    model: str,
    cache: ResponseCache | None,
    counters: UsageCounters,
    base_delay_s: float = 0.5,
    max_delay_s: float = 30.0,
    permits: PermitSource | None = None,
    callers: int = 1,
) -> LLMClient:
    """The full stack for one role.

    `base_url` and `model` are explicit because the embedded server's URL is known only at run time.

    `base_delay_s`/`max_delay_s` bound the retry backoff (full jitter); Retry-After from the server wins when longer.

    `role_name`, when a vocabulary.Role value, is sent with every request as the X-GPO-Role header (llm/transport.py).

    With `permits` (the run's limiter), the role's requests/tokens per minute hold for the whole run: every actor
    built with the same source shares one bucket per (role, endpoint).

    `callers`: how many clients (actors, or the driver) call each of these endpoints for this role in the run, this
    one included: each keeps its share of the role's `max_in_flight` (the run's cap per endpoint) in flight.
    """
    cap = in_flight_share(role.in_flight_cap, callers=callers)
    urls = [base_url] if isinstance(base_url, str) else list(base_url)

    def endpoint(url: str) -> LLMClient:
        transport = HTTPTransport if role.transport == "http" else OpenAITransport
        client: LLMClient = transport(
            base_url=url,
            model=model,
            api_key_env=role.api_key_env,
            timeout_s=role.timeout_s,
            read_timeout_s=role.read_timeout_s,
            idle_read_timeout_s=role.idle_read_timeout_s,
            max_reply_bytes=role.max_reply_bytes,
            structured_output=role.uses_structured_output,
            schema_style=role.structured_output_style or ("json_object_schema" if role.is_embedded else "json_schema"),
            role=str(role_name) if role_name in ROLES else None,
        )
        client = AttemptCountingClient(client, counters=counters)
        # Limits are per endpoint: each server has its own capacity and rate limits.
        limited = permits is not None and (role.requests_per_minute or role.tokens_per_minute)
        run_wide = LeasedRate(permits, key=f"{role_name} {url}", requests_per_minute=role.requests_per_minute,
                              tokens_per_minute=role.tokens_per_minute) if limited else None
        return LimitedClient(
            client,
            max_in_flight=cap,
            requests_per_minute=role.requests_per_minute,
            tokens_per_minute=role.tokens_per_minute,
            run_wide=run_wide,
            **adaptive_limit(role, url=url, counters=counters, cap=cap),
        )

    client = (endpoint(urls[0]) if len(urls) == 1
              else BalancedClient([endpoint(u) for u in urls], endpoints=urls, counters=counters))
    if role.hedge.enabled:
        h = role.hedge
        client = HedgedClient(client, counters=counters, percentile=h.percentile, min_delay_s=h.min_delay_s,
                              min_samples=h.min_samples, max_extra_fraction=h.max_extra_fraction)
    client = RetryingClient(
        client,
        max_attempts=role.max_retries + 1,
        base_delay_s=base_delay_s,
        max_delay_s=max_delay_s,
        on_retry=counters.record_retry,
        log_context={"role": role_name},
        rate_limited_for_s=role.rate_limited_retry_s,
    )
    if cache is not None:
        client = CachedClient(client, cache=cache, model=model)
    return AccountingClient(client, counters=counters)


def adaptive_limit(role: LLMRoleConfig, *, url: str, counters: UsageCounters, cap: int | None = None
                   ) -> dict[str, object]:
    """LimitedClient's `adaptive` and `on_limit` for one endpoint of the role (none while adaptive_concurrency is
    off), below `cap` (this client's share of the role's max_in_flight; default all of it): its limit is counted in
    `counters` (usage.json's `concurrency`)."""
    a = role.adaptive_concurrency
    if not a.enabled:
        return {}
    cap = role.in_flight_cap if cap is None else cap
    settings = LimitSettings(min_limit=min(a.min, cap), max_limit=cap, initial_limit=a.initial,
                             backoff_ratio=a.backoff_ratio, latency_tolerance=a.latency_tolerance)

    def on_limit(limit: int) -> None:
        counters.record_concurrency(url, limit=limit, cap=cap)

    return {"adaptive": AdaptiveLimit(settings, clock=time.monotonic), "on_limit": on_limit}


async def close_client(client: LLMClient) -> None:
    """Close a stack built by `build_client` (the transport's HTTP connections)."""
    close = getattr(client, "aclose", None)
    if close is not None:
        await close()
