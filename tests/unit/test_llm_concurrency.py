"""The adaptive concurrency limit (llm/concurrency.py) and the slots that follow it (llm/limits.py AdaptiveSlots):
deterministic, on a clock that moves only when a test moves it."""

from __future__ import annotations

import asyncio
import heapq
import time
from collections import deque

import pytest

from gpo_ray.config import DEFAULT_EMBEDDED_IN_FLIGHT, DEFAULT_IN_FLIGHT, LLMRoleConfig, RunConfig
from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.concurrency import AdaptiveLimit, LimitSettings, in_flight_share
from gpo_ray.llm.errors import RateLimited
from gpo_ray.llm.limits import AdaptiveSlots, LimitedClient
from gpo_ray.llm.protocol import ChatRequest, user_message
from gpo_ray.llm.stack import adaptive_limit
from gpo_ray.llm.transport import HTTPTransport
from gpo_ray.testing import running_fake_llm
from tests.fakes import FakeClock, ScriptedClient

STEADY_S = 0.1  # the endpoint's latency when it is not queueing


def limit_of(clock: FakeClock, **settings) -> AdaptiveLimit:
    return AdaptiveLimit(LimitSettings(**({"max_limit": 32, "initial_limit": 4} | settings)), clock=clock)


def steady(limit: AdaptiveLimit, clock: FakeClock, calls: int, latency_s: float = STEADY_S) -> list[int]:
    """`calls` answered calls at `latency_s`, each sent with the limit full; the limit after each."""
    seen = []
    for _ in range(calls):
        clock.now += latency_s / max(1, limit.limit)
        seen.append(limit.on_success(latency_s, in_flight=limit.limit))
    return seen


def test_grows_while_latency_holds_steady():
    clock = FakeClock()
    limit = limit_of(clock)
    seen = steady(limit, clock, 20)
    assert seen == sorted(seen) and seen[-1] > 4


def test_never_exceeds_the_cap():
    clock = FakeClock()
    limit = limit_of(clock, max_limit=6)
    assert max(steady(limit, clock, 500)) == 6
    assert limit.limit == 6 and limit.highest == 6


def test_an_idle_limit_does_not_grow():
    """Calls that use a fraction of the limit say nothing about the endpoint's capacity."""
    clock = FakeClock()
    limit = limit_of(clock, initial_limit=8)
    for _ in range(100):
        limit.on_success(STEADY_S, in_flight=1)
    assert limit.limit == 8


def test_a_429_halves_the_limit_once_a_round_trip():
    clock = FakeClock()
    limit = limit_of(clock, initial_limit=16)
    steady(limit, clock, 5)
    before = limit.limit
    assert limit.on_overload() == before // 2
    assert limit.on_overload() == before // 2, "the calls sent at the old limit fail too: one overload"
    clock.now += STEADY_S
    assert limit.on_overload() == before // 4


def test_429s_take_it_down_to_min_and_not_below():
    clock = FakeClock()
    limit = limit_of(clock, min_limit=2, initial_limit=16)
    for _ in range(10):
        clock.now += 1.0
        limit.on_overload()
    assert limit.limit == 2


def test_backs_off_when_latency_rises_well_above_its_baseline():
    clock = FakeClock()
    limit = limit_of(clock, max_limit=16)
    steady(limit, clock, 300)
    assert limit.limit == 16
    queued = steady(limit, clock, 20, latency_s=STEADY_S * 5)  # the endpoint queues: latency five times the baseline
    assert queued[-1] < 16 / 2
    assert queued == sorted(queued, reverse=True)


def test_a_burst_of_late_answers_halves_the_limit_once_not_once_each():
    """A stall (of the endpoint, or of the caller's own event loop) delays every call in flight, and their answers are
    read together when it ends: one late round trip, which takes the limit to half at most, as a 429 does. Shrinking by
    each answer compounded: a limit of 64 fell to 1 in a burst of 40 (issue 27)."""
    clock = FakeClock()
    limit = limit_of(clock, max_limit=64)
    steady(limit, clock, 600)
    assert limit.limit == 64
    burst = [limit.on_success(STEADY_S * 6, in_flight=64) for _ in range(40)]  # all read at one instant
    assert burst[-1] == 32
    clock.now += STEADY_S * 6  # the next round trip, still as late: another halving at most
    assert [limit.on_success(STEADY_S * 6, in_flight=32) for _ in range(40)][-1] == 16


def test_slow_start_ended_by_a_burst_of_late_answers_halves_the_limit_once():
    """Slow start ends at the first late answer (the limit to the Vegas estimate, at least what answered without
    queueing) and the rest of the burst shrinks it further: together, still half at most within the round trip. Measured
    in issue 27: a driver's limit of 63 went to 32 by the estimate, then to 16 by the burst, in one round trip."""
    clock = FakeClock()
    limit = limit_of(clock, max_limit=64)
    for _ in range(200):  # slow start runs ahead of the calls answered: fewer in flight when they were sent
        clock.now += STEADY_S / limit.limit
        limit.on_success(STEADY_S, in_flight=-(-limit.limit * 3 // 5))
    assert limit.limit == 64
    burst = [limit.on_success(STEADY_S * 6, in_flight=32) for _ in range(40)]  # all read at one instant
    assert burst[-1] == 32


def test_holds_while_latency_is_between_halfway_and_the_tolerance():
    clock = FakeClock()
    limit = limit_of(clock, max_limit=32, initial_limit=8)
    steady(limit, clock, 3)
    held = steady(limit, clock, 40, latency_s=STEADY_S * 1.8)  # the baseline is 0.1 s, the tolerance 2x
    # the short average takes a few calls to get there, then neither grows nor shrinks
    assert len(set(held[10:])) == 1 and held[-1] < 32, held


def test_recovers_after_the_overload_ends():
    clock = FakeClock()
    limit = limit_of(clock, max_limit=16)
    steady(limit, clock, 300)
    for _ in range(3):
        clock.now += 1.0
        limit.on_overload()
    assert limit.limit == 2
    recovered = steady(limit, clock, 400)
    assert recovered[-1] == 16 and recovered == sorted(recovered), "additive growth back to the cap"


class QueueingServer:
    """A deterministic endpoint on a simulated clock: `slots` calls served at once, each in `service_s` (or
    `service_at(answered)`), the rest queued first come, first served; the client keeps as many calls in flight as
    `limit` allows, with always more to send. Each answer teaches the limit its latency."""

    def __init__(self, limit: AdaptiveLimit, clock: FakeClock, *, slots: int, service_s: float) -> None:
        self.limit, self.clock, self.slots, self.service_s = limit, clock, slots, service_s
        self.in_service: list[tuple[float, float, int]] = []  # (finish, sent, in flight when sent)
        self.queue: deque[tuple[float, int]] = deque()
        self.in_flight = 0
        self.limits: list[int] = []
        self.peak_in_flight = 0

    def run(self, calls: int, *, service_at=None) -> list[int]:
        """`calls` more answered calls; the limit after each."""
        seen: list[int] = []
        self._send()
        while len(seen) < calls:
            finish, sent, in_flight = heapq.heappop(self.in_service)
            self.clock.now = finish
            self.in_flight -= 1
            seen.append(self.limit.on_success(finish - sent, in_flight=in_flight))
            self._send(service_at(len(self.limits) + len(seen)) if service_at else self.service_s)
        self.limits += seen
        return seen

    def _send(self, service_s: float | None = None) -> None:
        while self.in_flight < self.limit.limit:
            self.in_flight += 1
            self.queue.append((self.clock.now, self.in_flight))
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        while self.queue and len(self.in_service) < self.slots:
            sent, in_flight = self.queue.popleft()
            heapq.heappush(self.in_service, (self.clock.now + (service_s or self.service_s), sent, in_flight))


def server_of(slots: int, *, cap: int = 256, service_s: float = STEADY_S) -> QueueingServer:
    clock = FakeClock()
    return QueueingServer(limit_of(clock, max_limit=cap, initial_limit=4), clock, slots=slots, service_s=service_s)


@pytest.mark.parametrize("slots", [4, 16, 64])
def test_against_a_queueing_server_the_baseline_does_not_drift_up(slots):
    """40 windows of the baseline's minimum with the endpoint full all along: the baseline stays the endpoint's
    service time (the first version's followed our own queueing up: 10x at 4 slots), so the limit stays within the
    latency tolerance of the capacity (2x) instead of growing to the cap, and the endpoint is kept busy."""
    server = server_of(slots)
    server.run(20_000)
    assert server.limit.baseline == pytest.approx(STEADY_S, rel=0.1)
    late = server.limits[-5_000:]
    assert slots <= min(late) and max(late) <= 2.1 * slots, (min(late), max(late))
    assert 20_000 / (server.clock.now - 1000.0) >= 0.9 * slots / STEADY_S, "throughput near the capacity"


@pytest.mark.parametrize("slots", [16, 64])
def test_slow_start_overshoot_is_bounded_and_undone_at_once(slots):
    """Slow start doubles the limit a round trip and hears of the queue a round trip late: it never grows past
    twice what answered without queueing (about 2x the capacity, not the cap of 256), and ends at the Vegas estimate
    of the capacity, not above the tolerance."""
    server = server_of(slots)
    seen = server.run(40 * slots)
    assert max(seen) <= 2.5 * slots < 256
    peak_at = seen.index(max(seen))
    ended_at = next(n for n in seen[peak_at:] if n < max(seen))  # the first change after the peak
    assert slots * 0.9 <= ended_at <= 1.5 * slots, (max(seen), ended_at)


def test_an_endpoint_that_really_became_slower_becomes_the_baseline():
    """Latency doubles for good (longer replies), with slots to spare: the first slower window is probed (the limit
    cut by the rise, the baseline kept), the second confirms it, and the limit grows again from there."""
    server = server_of(1_000, cap=64)
    server.run(600)
    assert server.limit.baseline == pytest.approx(STEADY_S, rel=0.05) and server.limit.limit == 64
    server.run(5_000, service_at=lambda n: STEADY_S * 2)
    assert server.limit.probes == 1
    assert server.limit.baseline == pytest.approx(2 * STEADY_S, rel=0.05)
    assert server.limit.limit == 64, "back at the cap: the slower endpoint still has room"


@pytest.mark.parametrize("bad", [dict(min_limit=0), dict(min_limit=9, max_limit=8), dict(backoff_ratio=1.0),
                                 dict(latency_tolerance=0.5), dict(short_window=600)])
def test_settings_out_of_their_bounds_are_refused(bad):
    with pytest.raises(ValueError):
        LimitSettings(**bad)


# --- the slots ------------------------------------------------------------------------------------------------


def ask(text: str) -> ChatRequest:
    return ChatRequest(messages=user_message(text))


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_slots_admit_waiters_when_the_limit_grows():
    clock = FakeClock()
    slots = AdaptiveSlots(limit_of(clock, initial_limit=2))
    holders = [asyncio.create_task(slots.acquire()) for _ in range(5)]
    await _settle()
    assert slots.in_flight == 2 and sum(t.done() for t in holders) == 2
    slots.answered(STEADY_S, in_flight=2)  # slow start: +1
    await _settle()
    assert slots.in_flight == 3 and sum(t.done() for t in holders) == 3
    for t in holders[3:]:
        t.cancel()
    await _settle()
    assert slots.in_flight == 3, "cancelled waiters hold no slot"


async def test_after_a_shrink_finishing_calls_admit_no_one_until_below_the_limit():
    clock = FakeClock()
    slots = AdaptiveSlots(limit_of(clock, initial_limit=8))
    for _ in range(8):
        await slots.acquire()
    waiter = asyncio.create_task(slots.acquire())
    slots.overloaded()  # 8 -> 4
    for left in (7, 6, 5, 4):
        slots.release()
        await _settle()
        assert (slots.in_flight, waiter.done()) == (left, False)
    slots.release()
    await _settle()
    assert waiter.done() and slots.in_flight == 4


async def test_the_limited_client_backs_off_on_429_and_counts_the_limit():
    clock = FakeClock()
    counters = UsageCounters()
    inner = ScriptedClient([RateLimited("slow down"), RateLimited("slow down")], clock=clock)
    client = LimitedClient(inner, max_in_flight=8, adaptive=limit_of(clock, max_limit=8, initial_limit=8),
                           on_limit=lambda n: counters.record_concurrency("http://e/v1", limit=n, cap=8), clock=clock)
    for _ in range(2):
        with pytest.raises(RateLimited):
            await client.complete(ask("q"))
        clock.now += 1.0
    await client.complete(ask("q"))
    assert counters.snapshot()["concurrency"] == {"http://e/v1": {"limit": 2, "min": 2, "max": 8, "cap": 8}}


async def test_the_cap_holds_at_the_inner_client_whatever_the_limit_learns():
    clock = FakeClock()
    inner = ScriptedClient()
    client = LimitedClient(inner, max_in_flight=3, adaptive=limit_of(clock, max_limit=3, initial_limit=3), clock=clock)
    for round_ in range(5):
        inner.release.clear()
        calls = [asyncio.create_task(client.complete(ask(f"q{round_}-{i}"))) for i in range(10)]
        await _settle()
        assert inner.in_progress == 3
        inner.release.set()
        await asyncio.gather(*calls)
    assert inner.peak_in_progress == 3


def test_on_by_default_with_the_default_cap_and_off_keeps_the_usage_shape():
    counters = UsageCounters()
    parts = adaptive_limit(LLMRoleConfig(base_url="http://e/v1"), url="http://e/v1", counters=counters)
    assert parts["adaptive"].settings.max_limit == DEFAULT_IN_FLIGHT
    LimitedClient(ScriptedClient(), max_in_flight=DEFAULT_IN_FLIGHT, **parts)
    assert counters.snapshot()["concurrency"]["http://e/v1"]["cap"] == DEFAULT_IN_FLIGHT
    off = LLMRoleConfig(base_url="http://e/v1", adaptive_concurrency={"enabled": False})
    counters = UsageCounters()
    assert adaptive_limit(off, url="http://e/v1", counters=counters) == {}
    assert "concurrency" not in counters.snapshot()


def test_the_default_cap_is_smaller_for_the_embedded_model_and_the_users_cap_wins():
    assert LLMRoleConfig().in_flight_cap == DEFAULT_EMBEDDED_IN_FLIGHT < DEFAULT_IN_FLIGHT
    assert LLMRoleConfig(base_url="http://e/v1").in_flight_cap == DEFAULT_IN_FLIGHT
    assert LLMRoleConfig(base_url="http://e/v1", max_in_flight=5).in_flight_cap == 5


def test_each_caller_gets_its_share_of_the_cap():
    assert [in_flight_share(64, callers=n) for n in (1, 2, 3, 64, 100)] == [64, 32, 21, 1, 1]
    counters = UsageCounters()
    parts = adaptive_limit(LLMRoleConfig(base_url="http://e/v1", max_in_flight=10), url="http://e/v1",
                           counters=counters, cap=in_flight_share(10, callers=2))
    assert parts["adaptive"].settings.max_limit == 5


def test_on_the_limit_is_capped_by_max_in_flight_and_counted():
    counters = UsageCounters()
    role = LLMRoleConfig(max_in_flight=16, adaptive_concurrency={"enabled": True, "min": 2, "initial": 32})
    parts = adaptive_limit(role, url="http://e/v1", counters=counters)
    LimitedClient(ScriptedClient(), max_in_flight=16, **parts)
    assert counters.snapshot()["concurrency"] == {"http://e/v1": {"limit": 16, "min": 16, "max": 16, "cap": 16}}


def test_a_min_above_the_cap_is_refused():
    with pytest.raises(ValueError, match="min"):
        LLMRoleConfig(max_in_flight=2, adaptive_concurrency={"enabled": True, "min": 4})


def test_levels_merge_as_sums_across_actors():
    a, b = UsageCounters(), UsageCounters()
    a.record_concurrency("u", limit=3, cap=8)
    a.record_concurrency("u", limit=6, cap=8)
    a.record_concurrency("u", limit=2, cap=8)
    b.record_concurrency("u", limit=5, cap=8)
    assert a.snapshot()["concurrency"] == {"u": {"limit": 2, "min": 2, "max": 6, "cap": 8}}
    merged = UsageCounters().merge(a).merge(b.snapshot()).concurrency
    assert merged == {"u": {"limit": 7, "min": 7, "max": 11, "cap": 16}}


def test_turning_it_off_leaves_the_resume_fingerprint_alone():
    """How calls are sent, not what is asked: a run may be resumed with it on or off."""
    on = RunConfig(tasks=["bbh/navigate"])
    off = RunConfig(tasks=["bbh/navigate"], task_model={"adaptive_concurrency": {"enabled": False, "initial": 2}})
    assert on.fingerprint() == off.fingerprint()
    assert on.task_model.adaptive_concurrency.enabled and not off.task_model.adaptive_concurrency.enabled


def test_the_default_cap_keeps_the_fingerprint_runs_were_written_with():
    """max_in_flight unset hashes as the 8 it stood for before it became the run's cap (test_fingerprint_pinned);
    a cap the user sets is part of the fingerprint, as before."""
    assert RunConfig(tasks=["bbh/navigate"]).fingerprint() == RunConfig(
        tasks=["bbh/navigate"], task_model={"max_in_flight": 8}).fingerprint()
    assert RunConfig(tasks=["bbh/navigate"]).fingerprint() != RunConfig(
        tasks=["bbh/navigate"], task_model={"max_in_flight": 64}).fingerprint()


async def test_against_a_fake_with_two_slots_the_limit_backs_off_as_latency_rises_far_below_the_cap():
    """The endpoint queues what its 2 slots cannot serve, so latency grows with every call over 2: the limit grows
    (slow start), backs off once latency has doubled, and stays far below a cap of 32 that it never reaches; the
    endpoint never had more calls open than the limit allowed."""
    cap, calls = 32, 120
    limits: list[int] = []
    async with running_fake_llm(concurrency=2, latency_s=0.05) as server:
        transport = HTTPTransport(base_url=server.base_url, model="m")
        limit = AdaptiveLimit(LimitSettings(max_limit=cap, initial_limit=2), clock=time.monotonic)
        client = LimitedClient(transport, max_in_flight=cap, adaptive=limit, on_limit=limits.append)
        try:
            await asyncio.gather(*(client.complete(ask(f"What is {i} + 1?")) for i in range(calls)))
        finally:
            await transport.aclose()
    stats = server.stats()
    assert stats["completed"] == calls
    peak = max(limits)
    assert 2 < peak < cap, limits
    assert min(limits[limits.index(peak):]) <= peak / 2, f"backed off after the peak: {limits}"
    assert limit.limit < cap / 2, limits
    assert stats["peak_open"] <= peak
