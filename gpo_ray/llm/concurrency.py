"""How many calls to keep in flight to one endpoint, learned from what it answers (pure: no I/O, the clock given).

An endpoint's capacity is not known in advance and changes with its load. `AdaptiveLimit` finds it the way TCP and
Netflix's concurrency-limits (Vegas, Gradient2) do, from each call's latency and its overload signals:

- **Latency gradient.** A short moving average of the latency of answered calls (the last few) against a baseline,
  the endpoint's latency when it is not queueing: the lowest short average seen, which follows a higher one only
  slowly (over `long_window` calls: an endpoint that really became slower, e.g. longer replies, becomes the
  baseline; our own queueing, which a shrink undoes, does not). While the short average holds within
  halfway to `latency_tolerance` x the baseline the endpoint is not queueing our calls, and the limit grows; between
  halfway and the tolerance it holds; above, it shrinks in proportion (at most to half per call, smoothed), since queueing adds latency and no throughput.
  An average, not single calls: replies of different lengths take different times.
- **Growth** is fast at first (slow start: +1 a call, so about doubling each round trip) until latency passes
  halfway to the tolerance or the first shrink, then additive (+1 a round trip: +1/limit a call); only while the
  calls use at least half the limit (an idle limit says nothing about the endpoint, and must not grow to the cap
  unused).
- **Overload** (a 429 or another sign the endpoint is full, `on_overload`) halves the limit (`backoff_ratio`), at
  most once a round trip (the short average's latency): the calls sent at the old limit that fail too are one
  overload, not several.
- **Bounds.** The limit stays in [min_limit, max_limit]; max_limit is the user's cap (`max_in_flight`) and is never
  exceeded.

The limit is a float inside (growth by fractions); callers use `limit`, the whole number of slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

SLOW_START_GROWTH = 1.0  # added to the limit per answered call in slow start
MIN_GRADIENT = 0.5  # a single call's latency shrinks the limit to half at most


@dataclass(frozen=True)
class LimitSettings:
    """The algorithm's knobs (LLMRoleConfig.adaptive_concurrency gives them from the config)."""

    min_limit: int = 1
    max_limit: int = 8
    initial_limit: int = 4
    backoff_ratio: float = 0.5
    latency_tolerance: float = 2.0
    short_window: int = 10  # calls in the short average
    long_window: int = 500  # calls over which the baseline follows a slower endpoint
    smoothing: float = 0.2  # how much of a latency-driven shrink applies per call

    def __post_init__(self) -> None:
        if not 1 <= self.min_limit <= self.max_limit:
            raise ValueError("need 1 <= min_limit <= max_limit")
        if not 0 < self.backoff_ratio < 1:
            raise ValueError("backoff_ratio must be in (0, 1)")
        if self.latency_tolerance < 1:
            raise ValueError("latency_tolerance must be at least 1")
        if not 1 <= self.short_window <= self.long_window:
            raise ValueError("need 1 <= short_window <= long_window")
        if not 0 < self.smoothing <= 1:
            raise ValueError("smoothing must be in (0, 1]")


def _ema_weight(window: int) -> float:
    return 2.0 / (window + 1)


class AdaptiveLimit:
    """The concurrency limit of one endpoint, as its calls answer (see the module's docstring)."""

    def __init__(self, settings: LimitSettings, *, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._limit = float(min(settings.max_limit, max(settings.min_limit, settings.initial_limit)))
        self._short: float | None = None  # seconds
        self._baseline: float | None = None
        self._slow_start = True
        self._last_backoff: float | None = None
        self.highest = self.limit

    @property
    def limit(self) -> int:
        """Calls that may be in flight now: at least min_limit, at most the cap."""
        return max(self.settings.min_limit, min(self.settings.max_limit, math.floor(self._limit)))

    def on_success(self, latency_s: float, *, in_flight: int) -> int:
        """An answered call: its latency, and the calls in flight when it was sent (itself included)."""
        s = self.settings
        latency_s = max(latency_s, 1e-6)
        if self._short is None or self._baseline is None:
            self._short = self._baseline = latency_s
        else:
            self._short += _ema_weight(s.short_window) * (latency_s - self._short)
            if self._short < self._baseline:  # the endpoint is faster than we thought: at once
                self._baseline = self._short
            else:  # slower: only slowly (queueing must not become the baseline, a slower endpoint should)
                self._baseline += _ema_weight(s.long_window) * (self._short - self._baseline)
        gradient = max(MIN_GRADIENT, min(1.0, s.latency_tolerance * self._baseline / self._short))
        queueing = self._short > (1 + s.latency_tolerance) / 2 * self._baseline  # halfway to the tolerance
        if queueing:
            self._slow_start = False  # grow carefully from here
        if gradient < 1.0:
            self._shrink(self._limit * (1 - s.smoothing + s.smoothing * gradient))
        elif not queueing and in_flight * 2 >= self._limit:
            self._limit += SLOW_START_GROWTH if self._slow_start else 1.0 / self._limit
        return self._settle()

    def on_overload(self) -> int:
        """A call the endpoint refused as overloaded (429): halve the limit, once a round trip."""
        now = self._clock()
        round_trip = self._short or 0.0
        if self._last_backoff is None or now - self._last_backoff >= round_trip:
            self._last_backoff = now
            self._shrink(self._limit * self.settings.backoff_ratio)
        return self._settle()

    def _shrink(self, to: float) -> None:
        self._slow_start = False
        self._limit = min(self._limit, to)

    def _settle(self) -> int:
        s = self.settings
        self._limit = max(float(s.min_limit), min(float(s.max_limit), self._limit))
        limit = self.limit
        self.highest = max(self.highest, limit)
        return limit
