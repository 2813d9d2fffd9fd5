"""Run-wide limits without Ray: the lease bucket's bound in every window, batching, restarts, and the client side."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from gpo_ray.llm.limits import LimitedClient, estimate_tokens
from gpo_ray.llm.protocol import ChatRequest, Usage, user_message
from gpo_ray.llm.run_limits import LEASE_TTL_S, LeasedRate, Limiter, SharedLimits, most_sent_in
from gpo_ray.testing.stats import most_in_any_window
from tests.fakes import FakeClock, ScriptedClient




def greedy_sends(limits_per_phase: list[SharedLimits], *, seconds: float, seed: int = 3) -> list[float]:
    """Clients that always have 8 requests waiting: each grant is sent at a random moment of its validity, the
    worst case for the window bound being a grant held to its last instant. A new `SharedLimits` per phase is a
    limiter restarted (empty) at that phase's start."""
    rng = random.Random(seed)
    sends: list[float] = []
    phase_len = seconds / len(limits_per_phase)
    now = 0.0
    for i, limits in enumerate(limits_per_phase):
        while now < (i + 1) * phase_len:
            grant, wait = limits.try_lease(want_requests=8, want_tokens=0, min_tokens=0, now=now)
            if grant is None:
                now += wait
                continue
            late = rng.choice([0.0, grant.ttl_s * 0.999, rng.uniform(0, grant.ttl_s)])
            sends += [now + late] * grant.requests
    return sends


@pytest.mark.parametrize("rpm", [2, 60, 600, 6000])
def test_no_minute_ever_sees_more_than_the_limit_and_the_rate_is_nearly_all_used(rpm):
    sends = greedy_sends([SharedLimits(requests_per_minute=rpm, tokens_per_minute=None, now=0.0)],
                         seconds=600)
    assert most_in_any_window(sends, 60.0) <= rpm == math.floor(most_sent_in(60.0, requests_per_minute=rpm) + 1e-9)
    used = sum(1 for t in sends if t < 600) / (rpm * 10)
    assert used >= (0.9 if rpm >= 60 else 0.4)


def test_a_restarted_limiter_starts_empty_so_the_limit_holds_across_the_restart():
    rpm = 600
    phases = [SharedLimits(requests_per_minute=rpm, tokens_per_minute=None, now=t) for t in (0.0, 100.0, 200.0)]
    sends = greedy_sends(phases, seconds=300)
    assert most_in_any_window(sends, 60.0) <= rpm


def test_a_limiter_restarted_full_would_break_the_limit():
    """The check above can fail: a bucket that starts full lets a restart add a burst on top of the minute."""
    rpm = 600
    phases = [SharedLimits(requests_per_minute=rpm, tokens_per_minute=None, now=t) for t in (0.0, 30.0, 60.0, 90.0)]
    for limits in phases[1:]:
        limits.requests.level = limits.requests.capacity
    assert most_in_any_window(greedy_sends(phases, seconds=120), 60.0) > rpm


def test_at_full_demand_one_lease_admits_a_batch():
    limits = SharedLimits(requests_per_minute=2400, tokens_per_minute=None, now=0.0)  # capacity 40: batches of 20
    sends = greedy_sends([limits], seconds=60)
    assert limits.granted_requests == len(sends)
    assert limits.granted_requests / limits.leases >= 7.9  # each client wants 8: every lease carries all 8


def test_a_fresh_bucket_grants_nothing_until_it_has_refilled():
    limits = SharedLimits(requests_per_minute=60, tokens_per_minute=None, now=0.0)
    grant, wait = limits.try_lease(want_requests=1, want_tokens=0, min_tokens=0, now=0.0)
    assert grant is None and wait == pytest.approx(61 / 59)  # refill (60 - 1) / 61 per second
    grant, _ = limits.try_lease(want_requests=1, want_tokens=0, min_tokens=0, now=wait)
    assert grant is not None and grant.requests == 1 and grant.ttl_s == LEASE_TTL_S


def test_tokens_used_beyond_the_charge_are_a_debt_that_delays_the_next_lease():
    limits = SharedLimits(requests_per_minute=None, tokens_per_minute=6100, now=0.0)  # capacity 305, refill 95/s
    grant, _ = limits.try_lease(want_requests=1, want_tokens=100, min_tokens=100, now=10.0)
    assert grant is not None and grant.tokens == 100 and limits.tokens.level == 205
    limits.correct_tokens(200)  # the endpoint counted 200 more than charged
    _, wait = limits.try_lease(want_requests=1, want_tokens=100, min_tokens=100, now=10.0)
    assert wait == pytest.approx(95 / 95)
    limits.correct_tokens(-1000)  # a refund never fills the bucket beyond its capacity
    assert limits.tokens.level == limits.tokens.capacity


def test_no_minute_ever_sees_more_tokens_than_tokens_per_minute():
    """Clients whose estimates are exact, taking 100-token requests as fast as granted, each grant spent at a random
    moment of its validity: the tokens sent in any 60 s stay within the limit, and most of it is used."""
    tpm, rng, now, sends = 60_000, random.Random(5), 0.0, []
    limits = SharedLimits(requests_per_minute=None, tokens_per_minute=tpm, now=0.0)
    while now < 600:
        grant, wait = limits.try_lease(want_requests=8, want_tokens=800, min_tokens=100, now=now)
        if grant is None:
            now += wait
            continue
        sends.append((now + rng.uniform(0, grant.ttl_s), grant.tokens))
    sends.sort()
    most, first, total = 0.0, 0, 0.0
    for t, tokens in sends:
        total += tokens
        while t - sends[first][0] >= 60.0:
            total -= sends[first][1]
            first += 1
        most = max(most, total)
    assert most <= tpm + 1e-6
    assert sum(tokens for _, tokens in sends) / (tpm * 10) >= 0.9


def test_a_request_larger_than_the_token_bucket_is_charged_the_bucket():
    limits = SharedLimits(requests_per_minute=None, tokens_per_minute=6100, now=0.0)
    grant, _ = limits.try_lease(want_requests=1, want_tokens=10_000, min_tokens=10_000, now=10.0)
    assert grant is not None and grant.tokens == 305


def ask(text: str = "q", **kw) -> ChatRequest:
    return ChatRequest(messages=user_message(text), **kw)


class SettlingClock(FakeClock):
    """A fake clock whose sleep lets every other ready task run before time moves (as it would in real time:
    clients spend their permits at once, while the limiter waits for the next batch)."""

    async def sleep(self, seconds: float) -> None:
        for _ in range(100):
            await asyncio.sleep(0)
        await super().sleep(seconds)


class CountingSource:
    """A PermitSource over a `Limiter` on a fake clock that records every lease request, and can fail."""

    def __init__(self, clock: FakeClock) -> None:
        self.limiter = Limiter(clock=clock, sleep=clock.sleep)
        self.calls: list[dict] = []
        self.fail_next = 0

    async def lease(self, key: str, **request):
        self.calls.append(request)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("limiter gone")
        return await self.limiter.lease(key, **request)


async def test_actors_sharing_a_limiter_share_one_rate():
    """Four clients (four actors) against one limiter send at the one configured rate between them."""
    clock = SettlingClock(start=0.0)
    source = CountingSource(clock)
    inner = ScriptedClient(clock=clock)
    clients = [LimitedClient(inner, max_in_flight=8, requests_per_minute=600,
                             run_wide=LeasedRate(source, key="task_model http://x", requests_per_minute=600,
                                                 tokens_per_minute=None, clock=clock))
               for _ in range(4)]
    await asyncio.gather(*(c.complete(ask(f"{i}-{j}")) for i, c in enumerate(clients) for j in range(100)))
    assert len(inner.call_times) == 400
    assert most_in_any_window(inner.call_times, 6.0) <= most_sent_in(6.0, requests_per_minute=600)
    assert 400 / (inner.call_times[-1] - inner.call_times[0]) == pytest.approx(10 * 59 / 61, rel=0.05)
    assert len(source.calls) < 400 / 3  # permits come in batches (here of up to half the bucket: 5)


async def test_permits_left_over_are_spent_while_valid_and_dropped_after():
    clock = FakeClock(start=0.0)
    source = CountingSource(clock)
    held = asyncio.Event()
    lease = source.lease

    async def held_lease(key, **request):
        await held.wait()
        return await lease(key, **request)

    source.lease = held_lease
    rate = LeasedRate(source, key="k", requests_per_minute=600, tokens_per_minute=None, clock=clock)
    first, cancelled = asyncio.create_task(rate.acquire()), asyncio.create_task(rate.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()  # a caller that went away while the lease (for both) was being asked
    held.set()
    await first
    assert rate.leases == 1
    await rate.acquire()  # the cancelled caller's permit, still valid
    assert rate.leases == 1
    first, cancelled = asyncio.create_task(rate.acquire()), asyncio.create_task(rate.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await first
    assert rate.leases == 2
    clock.now += LEASE_TTL_S  # the left-over permit has expired
    await rate.acquire()
    assert rate.leases == 3


async def test_token_corrections_reach_the_limiter_even_when_a_lease_call_failed():
    clock = FakeClock(start=0.0)
    source = CountingSource(clock)
    inner = ScriptedClient(clock=clock, usage=Usage(prompt_tokens=400, completion_tokens=100))
    rate = LeasedRate(source, key="k", requests_per_minute=None, tokens_per_minute=60_000, clock=clock)
    client = LimitedClient(inner, max_in_flight=1, run_wide=rate)
    await client.complete(ask(max_tokens=10))
    estimate = estimate_tokens(ask(max_tokens=10))
    clock.now += 10  # the lease expired: the next call asks again, and fails once
    source.fail_next = 1
    with pytest.raises(ConnectionError):
        await client.complete(ask(max_tokens=10))
    await client.complete(ask(max_tokens=10))
    assert source.calls[1]["token_correction"] == 500 - estimate
    assert source.calls[2]["token_correction"] == 500 - estimate  # the failed call's correction, sent again
    assert source.calls[0]["token_correction"] == 0


async def test_a_lease_call_is_answered_empty_after_the_hold_and_the_client_asks_again():
    clock = FakeClock(start=0.0)
    source = CountingSource(clock)
    source.limiter.max_hold_s = 0.1  # shorter than one refill (1 s at 60 a minute)
    rate = LeasedRate(source, key="k", requests_per_minute=60, tokens_per_minute=None, clock=clock)
    await rate.acquire()
    assert len(source.calls) >= 2 and clock.now >= 61 / 59
