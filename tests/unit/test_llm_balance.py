"""Several endpoints of one role, balanced by load."""

import asyncio

from gpo_ray.llm.accounting import UsageCounters
from gpo_ray.llm.balance import BalancedClient
from gpo_ray.llm.errors import RetryableLLMError
from gpo_ray.llm.health import EndpointState, HealthBook, HealthPolicy
from gpo_ray.llm.retry import RetryingClient
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, user_message


class SlowEndpoint:
    def __init__(self, delay: float):
        self.delay = delay
        self.served = 0
        self.in_flight = 0
        self.peak = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        self.served += 1
        return ChatResponse(f"{id(self)}")


async def test_requests_spread_evenly_over_equal_endpoints():
    a, b = SlowEndpoint(0.01), SlowEndpoint(0.01)
    client = BalancedClient([a, b])
    await asyncio.gather(*(client.complete(ChatRequest(user_message(str(i)))) for i in range(40)))
    assert a.served == b.served == 20
    assert a.peak == b.peak == 20


async def test_a_slow_endpoint_gets_less_work_when_requests_trickle_in():
    fast, slow = SlowEndpoint(0.001), SlowEndpoint(0.05)
    client = BalancedClient([slow, fast])

    async def user(i):
        for _ in range(10):
            await client.complete(ChatRequest(user_message(str(i))))

    await asyncio.gather(*(user(i) for i in range(3)))
    assert fast.served > slow.served


# --- outlier ejection (llm/health.py) -------------------------------------------------------------------------------



class Refusing(SlowEndpoint):
    """A dead server: every connection refused, until it is restarted."""

    def __init__(self):
        super().__init__(0.0)
        self.dead = True
        self.tried = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.tried += 1
        if self.dead:
            error = RetryableLLMError("connection failed (ClientConnectorError)")
            error.kind = "connection"
            raise error
        return await super().complete(request)


class Hanging(SlowEndpoint):
    """A wedged server (SIGSTOP): accepts, never answers."""

    def __init__(self):
        super().__init__(3600.0)


def test_consecutive_failures_eject_for_a_growing_interval_and_a_probe_takes_it_back():
    book = HealthBook(2, HealthPolicy(threshold=3, base_ejection_s=2.0, max_ejection_s=5.0))
    assert [book.failed(0, "connection", now=0.0) for _ in range(3)] == [False, False, True]
    assert book.states(1.0) == [EndpointState.EJECTED, EndpointState.HEALTHY] and book.open(1.0) == [1]
    assert book.failed(1, "rate_limited", now=1.0) is False  # a 429 says nothing about the server's health
    assert book.open(2.0) == [0, 1]  # the ejection is over: one probe may go
    book.sent(0, 2.0)
    assert book.open(2.1) == [1] and book.states(2.1)[0] == EndpointState.PROBING
    assert book.failed(0, "timeout", now=2.5)  # the probe failed: out again, for twice as long
    assert book.open(6.4) == [1] and book.open(6.5) == [0, 1]
    book.sent(0, 6.5)
    assert book.failed(0, "server_error", now=7.0) and book.records[0].ejected_until == 12.0  # capped at 5 s
    book.sent(0, 12.0)
    book.succeeded(0, 0.1)  # answered: back in, and the next ejection starts from the base interval again
    assert book.states(12.1) == [EndpointState.HEALTHY] * 2


def test_an_endpoint_back_after_a_long_outage_is_taken_back_within_the_capped_interval():
    """Down for 10 minutes, its probes failing: the interval stops growing at 5 s, so the first probe after it
    returns comes within 5 s, and its answer takes it back."""
    book = HealthBook(2)  # the default policy
    back_at = 600.0
    now = 0.0
    for _ in range(book.policy.threshold):
        book.failed(0, "connection", now=now)
    intervals = []
    while (now := book.records[0].ejected_until) < back_at:  # each probe, at the end of an ejection, fails
        assert book.open(now) == [0, 1]
        book.sent(0, now)
        before = now
        assert book.failed(0, "connection", now=now)
        intervals.append(book.records[0].ejected_until - before)
    assert intervals[:3] == [4.0, 5.0, 5.0] and max(intervals) == 5.0  # 2 s first, then doubling up to the cap
    assert book.open(back_at) == [1]  # still ejected when it returns ...
    probe_at = book.records[0].ejected_until
    assert probe_at - back_at <= 5.0 and book.open(probe_at) == [0, 1]  # ... and probed within 5 s
    book.sent(0, probe_at)
    book.succeeded(0, 0.1)
    assert book.states(probe_at) == [EndpointState.HEALTHY] * 2


def test_with_every_endpoint_out_requests_still_go_somewhere():
    book = HealthBook(2, HealthPolicy(threshold=1))
    book.failed(0, "connection", now=0.0)
    book.failed(1, "connection", now=0.0)
    assert book.open(0.5) == [0, 1]


async def test_a_dead_and_a_wedged_endpoint_are_ejected_and_the_work_goes_to_the_live_one():
    dead, wedged, live = Refusing(), Hanging(), SlowEndpoint(0.01)
    counters = UsageCounters()
    policy = HealthPolicy(threshold=2, base_ejection_s=30.0, max_ejection_s=30.0, wedge_factor=4.0,
                          wedge_floor_s=0.2)
    balanced = BalancedClient([dead, wedged, live], endpoints=["http://a/v1", "http://b/v1", "http://c/v1"],
                              counters=counters, policy=policy)
    client = RetryingClient(balanced, max_attempts=4, base_delay_s=0.0, max_delay_s=0.0)
    async def user(u: int) -> list[ChatResponse]:  # 4 callers, each waiting for its reply before the next
        return [await client.complete(ChatRequest(user_message(f"{u}-{i}"))) for i in range(15)]

    replies = await asyncio.wait_for(asyncio.gather(*(user(u) for u in range(4))), timeout=20)
    assert sum(map(len, replies)) == 60 and live.served == 60  # nothing lost: every request answered by the live one
    assert dead.tried <= 4  # the first requests in flight at once; once ejected, no request tried it again
    assert wedged.in_flight == 0  # the requests it held were given up and answered elsewhere
    assert counters.ejections == {"http://a/v1": 1, "http://b/v1": 1}
    assert counters.errors.get("wedged", 0) >= 1
    assert counters.endpoints["http://a/v1"] == dead.tried and counters.endpoints["http://c/v1"] == 60


async def test_a_restarted_endpoint_is_taken_back_after_its_ejection():
    now = [0.0]
    dead, live = Refusing(), SlowEndpoint(0.0)
    balanced = BalancedClient([dead, live], counters=UsageCounters(), clock=lambda: now[0],
                              policy=HealthPolicy(threshold=1, base_ejection_s=5.0))
    client = RetryingClient(balanced, max_attempts=3, base_delay_s=0.0, max_delay_s=0.0)
    for i in range(10):
        await client.complete(ChatRequest(user_message(str(i))))
    assert dead.tried == 1 and live.served == 10
    dead.dead = False  # restarted
    now[0] = 6.0  # its ejection is over: the next request probes it, and it answers
    for i in range(10):
        await client.complete(ChatRequest(user_message(f"after {i}")))
    assert dead.served + live.served == 20 and abs(dead.served - (live.served - 10)) <= 2  # back: about even


def test_endpoints_are_named_without_credentials_or_query():
    from gpo_ray.llm.balance import public_url

    assert public_url("https://user:sk-secret@gpu-1.example:8000/v1?key=sk-2") == "https://gpu-1.example:8000/v1"
    assert public_url("http://[::1]:9000/v1") == "http://[::1]:9000/v1"
