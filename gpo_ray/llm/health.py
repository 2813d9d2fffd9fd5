"""Endpoint health for a balanced role (Envoy's outlier ejection, gRPC's health checking): an endpoint that fails
`threshold` times in a row, or holds a request far longer than the others answer, is ejected for a growing
interval; when the interval is over, one probe request decides whether it is taken back. The interval grows to
`max_ejection_s` (5 s) at most: a server that comes back after a long outage is probed, and taken back, within 5 s
(with 60 s, a server killed for 15 s was taken back only 28 to 35 s after it returned, its interval having doubled
while it was down), at the cost of one probe request every 5 s to a server that stays down.

Pure: no I/O, the clock is passed in. llm/balance.py asks it where a request may go and tells it what happened.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

# What says an endpoint is unwell, not the request: it did not answer, or answered 5xx, or stopped mid-body.
UNHEALTHY_KINDS = frozenset({"connection", "timeout", "stalled", "server_error", "wedged"})


class EndpointState:
    HEALTHY = "healthy"
    EJECTED = "ejected"
    PROBING = "probing"  # the ejection is over; one request is out to see whether it answers


@dataclass
class EndpointHealth:
    """One endpoint's record: consecutive failures, ejections since it last answered (the interval doubles with
    each), and the time its current ejection ends."""

    failures: int = 0
    ejections: int = 0
    ejected_until: float = 0.0
    probe_out: bool = False

    def state(self, now: float) -> str:
        if self.ejections == 0:
            return EndpointState.HEALTHY
        return EndpointState.EJECTED if now < self.ejected_until or not self.probe_out else EndpointState.PROBING

    def open_to(self, now: float) -> bool:
        """Whether a new request may go here now: healthy, or its ejection is over and no probe is out yet."""
        return self.ejections == 0 or (now >= self.ejected_until and not self.probe_out)


@dataclass
class HealthPolicy:
    threshold: int = 3  # consecutive failures that eject an endpoint
    base_ejection_s: float = 2.0  # the first ejection; each further one doubles, up to max_ejection_s
    max_ejection_s: float = 5.0  # so a server back after a long outage is probed, and taken back, within 5 s
    wedge_factor: float = 8.0  # a request held this many times the recent median latency marks its endpoint wedged
    wedge_floor_s: float = 10.0  # ... and never sooner than this (the default read_timeout_s of a stalled body)


@dataclass
class HealthBook:
    """The health of every endpoint of one balanced role, as one client (one actor) has seen it."""

    endpoints: int
    policy: HealthPolicy = field(default_factory=HealthPolicy)
    records: list[EndpointHealth] = field(init=False)
    latencies: deque[float] = field(init=False)

    def __post_init__(self) -> None:
        self.records = [EndpointHealth() for _ in range(self.endpoints)]
        self.latencies = deque(maxlen=64)

    def open(self, now: float) -> list[int]:
        """Where a new request may go; every endpoint when none is open (a role with all endpoints out behaves as
        without ejection: its retries decide)."""
        open_ = [i for i, r in enumerate(self.records) if r.open_to(now)]
        return open_ or list(range(self.endpoints))

    def sent(self, i: int, now: float) -> None:
        r = self.records[i]
        if r.ejections and now >= r.ejected_until:
            r.probe_out = True

    def succeeded(self, i: int, latency_s: float) -> None:
        r = self.records[i]
        r.failures, r.ejections, r.ejected_until, r.probe_out = 0, 0, 0.0, False
        self.latencies.append(latency_s)

    def failed(self, i: int, kind: str, now: float) -> bool:
        """Count a failure of `kind`; True when it ejected the endpoint."""
        if kind not in UNHEALTHY_KINDS:
            return False
        r = self.records[i]
        if r.ejections and now < r.ejected_until:
            return False  # already out: what was still in flight when it went says nothing new
        r.failures += 1
        if r.probe_out or r.failures >= self.policy.threshold or kind == "wedged":
            self._eject(r, now)
            return True
        return False

    def wedge_after_s(self) -> float | None:
        """How long a request may be held before its endpoint counts as wedged; None until others have answered."""
        if len(self.latencies) < 4:
            return None
        return max(self.policy.wedge_floor_s, self.policy.wedge_factor * statistics.median(self.latencies))

    def _eject(self, r: EndpointHealth, now: float) -> None:
        interval = min(self.policy.max_ejection_s, self.policy.base_ejection_s * 2 ** r.ejections)
        r.ejections += 1
        r.failures = 0
        r.probe_out = False
        r.ejected_until = now + interval

    def states(self, now: float) -> list[str]:
        """Each endpoint's state (EndpointState): the balancer reports admitted/ejected to the live metrics."""
        return [r.state(now) for r in self.records]
