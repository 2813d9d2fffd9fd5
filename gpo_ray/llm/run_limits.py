"""Run-wide rate limits: one bucket per endpoint for the whole run, handed out to the actors as leases.

`requests_per_minute` and `tokens_per_minute` are what the user's account allows *in all*, so they hold across every
actor and node of a run. One limiter (an actor, `gpo_ray/actors/limiter.py`, a thin shell over `SharedLimits`)
holds the bucket of each endpoint; a client (`LeasedRate`, inside `LimitedClient`) asks it for a batch of permits at a
time - as many as it has requests waiting - and spends them locally, so one actor call admits several requests.

Why the limit holds in every window (the numbers are in `SharedLimits`):

- The limiter's bucket holds at most `capacity` and is refilled at `refill_per_s`; a grant takes from it. So the
  permits granted in any interval of length T are at most `capacity + refill_per_s * T` (a fresh or restarted limiter
  starts empty, which keeps this true across a restart: what the dead one granted came out of its own bucket).
- A permit is valid for `LEASE_TTL_S` from the moment it was granted; the client dates it from when it *asked*
  (plus the time the limiter reports it waited), which is never later. So every request sent in a window of W
  seconds was granted within W + LEASE_TTL_S of it, and the endpoint sees at most
  `capacity + refill_per_s * (W + LEASE_TTL_S)` requests in any W seconds.
- With `refill_per_s = (limit - capacity) / (60 + LEASE_TTL_S)` that is at most `limit` in any 60 s, and the
  sustained rate is (limit - capacity) / (60 + LEASE_TTL_S) per second: 59/61 (0.967) of the limit for requests
  (capacity: one second's worth), 0.934 for tokens (capacity: a twentieth of the minute, since one request may be
  large). Permits a client does not spend expire; it asks only for the requests it has waiting, so few do.

Tokens are charged up front from the request's estimate and corrected with the usage the endpoint reports (the
correction travels with the client's next lease request), as in the per-actor `TokenBucket`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]

LEASE_TTL_S = 1.0  # how long a granted permit may wait on the client before it is sent
SECONDS_PER_MINUTE = 60.0
MAX_BATCH = 64  # permits one lease may carry at most
TOKEN_CAPACITY_FRACTION = 1 / 20  # tokens a bucket may hold: a twentieth of the minute (3 s at the full rate)
_EPSILON = 1e-9
_MIN_WAIT_S = 1e-6  # shorter waits are not slept (a clock may not even move by them)

log = structlog.get_logger()


def refill_for(limit_per_minute: float, capacity: float) -> float:
    """The refill per second that keeps `capacity + refill * (60 + LEASE_TTL_S)` at `limit_per_minute`.

    For a limit below twice the capacity (under 2 requests a minute) half the limit is kept instead, so the bucket
    still refills; such a limit can then be exceeded by a fraction of one request."""
    usable = max(limit_per_minute - capacity, limit_per_minute / 2)
    return usable / (SECONDS_PER_MINUTE + LEASE_TTL_S)


def requests_capacity(requests_per_minute: float) -> float:
    """The requests bucket holds one second's worth, at least one request."""
    return max(1.0, requests_per_minute / SECONDS_PER_MINUTE)


def tokens_capacity(tokens_per_minute: float) -> float:
    """The tokens bucket holds a twentieth of the minute: one request may be large, so more than a second's worth."""
    return max(1.0, tokens_per_minute * TOKEN_CAPACITY_FRACTION)


def most_sent_in(window_s: float, *, requests_per_minute: float) -> float:
    """The most requests clients of one limiter can send in any `window_s` seconds (see the module docstring):
    `requests_per_minute` itself for a 60 s window."""
    capacity = requests_capacity(requests_per_minute)
    return capacity + refill_for(requests_per_minute, capacity) * (window_s + LEASE_TTL_S)


class LeaseBucket:
    """One limit (per minute) of one endpoint: a token bucket that starts empty. Pure: the caller passes `now`."""

    def __init__(self, limit_per_minute: float, *, capacity: float, now: float) -> None:
        if limit_per_minute <= 0 or capacity <= 0:
            raise ValueError("limit_per_minute and capacity must be positive")
        self.limit_per_minute = limit_per_minute
        self.capacity = capacity
        self.refill_per_s = refill_for(limit_per_minute, capacity)
        self.level = 0.0  # may go below zero: a debt, when a request used more tokens than it was charged
        self._updated = now

    def refill(self, now: float) -> None:
        if now > self._updated:
            self.level = min(self.capacity, self.level + (now - self._updated) * self.refill_per_s)
            self._updated = now

    def wait_for(self, amount: float) -> float:
        """Seconds until the level reaches `amount` (0 if it has)."""
        missing = amount - self.level
        return 0.0 if missing <= _EPSILON else missing / self.refill_per_s

    def take(self, amount: float) -> None:
        self.level -= amount

    def correct(self, amount: float) -> None:
        """Charge `amount` more (or give back, if negative) after the fact; never above the capacity."""
        self.level = min(self.capacity, self.level - amount)


@dataclass(frozen=True)
class LeaseGrant:
    """Permits for `requests` requests and `tokens` tokens, valid for `ttl_s` after the limiter granted them.

    `waited_s` is how long the limiter held the call before granting: the client dates the lease from when it asked
    plus this, never later than the grant. Nothing granted (requests == 0) means: ask again."""

    requests: int
    tokens: float
    ttl_s: float
    waited_s: float = 0.0


class SharedLimits:
    """The requests and tokens buckets of one endpoint, as the limiter holds them for the whole run.

    Requests: capacity one second's worth (at least 1). Tokens: a twentieth of the minute (at least 1); a request
    estimated above that is charged the capacity (else it could never be admitted). A lease is granted once the
    requests bucket holds the *batch* - min(wanted, half the capacity) - so that at full demand each lease admits
    several requests (the per-call cost is one actor call per batch, not per request).
    """

    def __init__(self, *, requests_per_minute: float | None, tokens_per_minute: float | None, now: float) -> None:
        self.requests = (
            LeaseBucket(requests_per_minute, capacity=requests_capacity(requests_per_minute), now=now)
            if requests_per_minute
            else None
        )
        self.tokens = (
            LeaseBucket(tokens_per_minute, capacity=tokens_capacity(tokens_per_minute), now=now)
            if tokens_per_minute
            else None
        )
        self.granted_requests = 0
        self.granted_tokens = 0.0
        self.leases = 0

    def batch(self, want_requests: int) -> int:
        """How many request permits a lease waits for: what is wanted, at most half the bucket (at least 1)."""
        if self.requests is None:
            return want_requests
        return max(1, min(want_requests, MAX_BATCH, math.floor(self.requests.capacity / 2)))

    def try_lease(self, *, want_requests: int, want_tokens: float, min_tokens: float,
                  now: float) -> tuple[LeaseGrant | None, float]:
        """A grant, or None and how long to wait before trying again.

        `want_requests` (>= 1) requests with `want_tokens` tokens in all are waiting on the client; the first of
        them needs `min_tokens`. Grants at least the batch of requests and the first one's tokens, at most what
        is wanted and what the buckets hold."""
        want_requests = max(1, min(want_requests, MAX_BATCH))
        waits = []
        if self.requests is not None:
            self.requests.refill(now)
            waits.append(self.requests.wait_for(self.batch(want_requests)))
        if self.tokens is not None:
            self.tokens.refill(now)
            waits.append(self.tokens.wait_for(min(min_tokens, self.tokens.capacity)))
        wait = max(waits, default=0.0)
        if wait > 0:
            return None, wait
        requests = want_requests
        if self.requests is not None:
            requests = min(want_requests, math.floor(self.requests.level + _EPSILON))
            self.requests.take(requests)
        tokens = 0.0
        if self.tokens is not None:
            first = min(min_tokens, self.tokens.capacity)
            tokens = max(first, min(max(want_tokens, first), self.tokens.level))
            self.tokens.take(tokens)
        self.granted_requests += requests
        self.granted_tokens += tokens
        self.leases += 1
        return LeaseGrant(requests=requests, tokens=tokens, ttl_s=LEASE_TTL_S), 0.0

    def correct_tokens(self, amount: float) -> None:
        """Tokens used beyond (positive) or below (negative) what the client was charged."""
        if self.tokens is not None and amount:
            self.tokens.correct(amount)


class Limiter:
    """What the limiter actor does, without Ray: one `SharedLimits` per endpoint key, made on first use from the
    limits the client sends (so a restarted limiter needs no setup); lease calls of one key are served first come,
    first served, each held at most `max_hold_s` (then answered with nothing, and the client asks again)."""

    def __init__(self, *, clock: Clock = time.monotonic, sleep: Sleep = asyncio.sleep, max_hold_s: float = 2.0) -> None:
        self._clock = clock
        self._sleep = sleep
        self.max_hold_s = max_hold_s
        self.limits: dict[str, SharedLimits] = {}
        self._turns: dict[str, asyncio.Lock] = {}

    async def lease(self, key: str, *, requests_per_minute: float | None, tokens_per_minute: float | None,
                    want_requests: int, want_tokens: float, min_tokens: float,
                    token_correction: float = 0.0) -> LeaseGrant:
        limits = self.limits.get(key)
        if limits is None:
            limits = self.limits[key] = SharedLimits(requests_per_minute=requests_per_minute,
                                                     tokens_per_minute=tokens_per_minute, now=self._clock())
            self._turns[key] = asyncio.Lock()
        limits.correct_tokens(token_correction)
        arrived = self._clock()
        async with self._turns[key]:
            while True:
                now = self._clock()
                grant, wait = limits.try_lease(want_requests=want_requests, want_tokens=want_tokens,
                                               min_tokens=min_tokens, now=now)
                if grant is not None:
                    return LeaseGrant(grant.requests, grant.tokens, grant.ttl_s, waited_s=now - arrived)
                hold = self.max_hold_s - (now - arrived)
                if hold < _MIN_WAIT_S:
                    return LeaseGrant(0, 0.0, 0.0, waited_s=now - arrived)
                await self._sleep(max(_MIN_WAIT_S, min(wait, hold)))

    def granted(self) -> dict[str, dict[str, float]]:
        """Per endpoint key: leases, request permits and tokens granted since this limiter started."""
        return {key: {"leases": s.leases, "requests": s.granted_requests, "tokens": s.granted_tokens}
                for key, s in self.limits.items()}


class PermitSource(Protocol):
    """Where a `LeasedRate` gets its permits: the run's limiter actor (or, in unit tests, a `SharedLimits`)."""

    async def lease(self, key: str, *, requests_per_minute: float | None, tokens_per_minute: float | None,
                    want_requests: int, want_tokens: float, min_tokens: float,
                    token_correction: float) -> LeaseGrant: ...


class LeasedRate:
    """The client's side of a run-wide limit: permits leased in batches from a `PermitSource`, spent here.

    Callers are served first come, first served. A call needs one request permit and its token estimate (capped at
    what the limiter's bucket can hold, as the limiter caps it); when the pool cannot serve it, one lease is asked
    for everyone waiting plus one per request being sent now: a busy client will want that many again as those
    come back, so at full demand a lease carries about max_in_flight permits, while a client sending one request at a
    time asks for one. A permit past its validity is dropped, never sent. `release` after each request."""

    def __init__(
        self,
        source: PermitSource,
        *,
        key: str,
        requests_per_minute: float | None,
        tokens_per_minute: float | None,
        clock: Clock = time.monotonic,
    ) -> None:
        self._source = source
        self.key = key
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._token_cap = tokens_capacity(tokens_per_minute) if tokens_per_minute else math.inf
        self._clock = clock
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._sending = 0
        self._requests = 0
        self._tokens = 0.0
        self._valid_until = -math.inf
        self._correction = 0.0
        self.leases = 0

    def charge(self, estimate: float) -> float:
        """What a request estimated at `estimate` tokens is charged (the bucket's capacity at most)."""
        return min(estimate, self._token_cap) if self._tpm else 0.0

    def _can_serve(self, cost: float) -> bool:
        return self._clock() < self._valid_until and self._requests >= 1 and self._tokens >= cost - _EPSILON

    async def acquire(self, estimate: float = 0.0) -> None:
        cost = self.charge(estimate)
        self._waiting += 1
        try:
            async with self._lock:
                while not self._can_serve(cost):
                    await self._lease(cost)
                self._requests -= 1
                self._tokens -= cost
                self._sending += 1
        finally:
            self._waiting -= 1

    async def _lease(self, cost: float) -> None:
        await asyncio.sleep(0)  # callers arriving in this same tick join the lease
        asked = self._clock()
        correction, self._correction = self._correction, 0.0
        want = self._waiting + self._sending
        try:
            grant = await self._source.lease(
                self.key, requests_per_minute=self._rpm, tokens_per_minute=self._tpm,
                want_requests=want, want_tokens=cost * want, min_tokens=cost, token_correction=correction)
        except BaseException:
            self._correction += correction  # not delivered: it goes with the next lease
            raise
        self.leases += 1
        if grant.requests:
            # A new lease replaces what is left of the old one (too little for the next caller, or expired).
            self._requests, self._tokens = grant.requests, grant.tokens
            self._valid_until = asked + grant.waited_s + grant.ttl_s

    def release(self, charged: float, used: float | None) -> None:
        """A request admitted by `acquire` is over: the endpoint reported `used` tokens for it (None: it failed, and
        keeps its charge). The difference is settled with the next lease."""
        self._sending -= 1
        if self._tpm and used is not None:
            self._correction += used - charged
