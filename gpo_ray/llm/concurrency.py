"""How many calls to keep in flight to one endpoint, learned from what it answers (pure: no I/O, the clock given).

An endpoint's capacity is not known in advance and changes with its load. `AdaptiveLimit` finds it the way TCP and
Netflix's concurrency-limits (Vegas, Gradient2) do, from each call's latency and its overload signals:

- **Latency gradient.** A short moving average of the latency of answered calls (the last few) against a baseline,
  the endpoint's latency when it is not queueing our calls. While the short average holds within halfway to
  `latency_tolerance` x the baseline the limit grows; between halfway and the tolerance it holds; above, it shrinks
  in proportion (at most to half per call, smoothed), since queueing adds latency and no throughput. An average, not
  single calls: replies of different lengths take different times. All in all, latency takes the limit down to half
  at most a round trip (the short average's latency), as a 429 does: calls answered together late (a stall of the
  endpoint, or of the caller's own event loop, which delays every answer it then reads at once) tell of one moment,
  not of as many; shrinking by each of them compounded the limit of 64 down to 1 within a burst of answers after a
  half-second stall of a driver starting its actors (benchmarks/README.md, issue 27).
- **The baseline** is the lowest short average of the last one to two windows of `long_window` calls (a windowed
  minimum, as BBR keeps its min RTT), not an average that follows latency up: under sustained queueing an average
  drifts up until queueing looks normal and the limit grows further (the flaw of the first version). A minimum moves
  up only when a whole window was slower, and then, before the higher baseline is trusted, the limit is cut by the
  rise (`limit x old / new`, a probe as BBR's ProbeRTT): if the rise was our own queueing, the shorter queue brings
  the latency back down within the next window and the old baseline with it; if the endpoint really became slower
  (longer replies, other clients), latency stays up, the next window confirms it and growth resumes from there.
- **Growth** is fast at first (slow start: +1 a call, so about doubling each round trip) until latency passes
  halfway to the tolerance or the first shrink, then additive (+1 a round trip: +1/limit a call); only while the
  calls use at least half the limit (an idle limit says nothing about the endpoint, and must not grow to the cap
  unused). Slow start overshoots: latency tells of the queue a round trip late, by when the limit has grown by up to
  as much again. When latency ends slow start, the limit is set to the Vegas estimate of the endpoint's capacity,
  the calls in flight scaled by baseline / latency (a server that queues what it cannot serve answers X calls in
  flight at X / capacity x its baseline latency), never above the limit: the overshoot is undone at once.
- **Overload** (a 429 or another sign the endpoint is full, `on_overload`) halves the limit (`backoff_ratio`), at
  most once a round trip (the short average's latency): the calls sent at the old limit that fail too are one
  overload, not several.
- **Bounds.** The limit stays in [min_limit, max_limit]; max_limit is the caller's share of the user's cap
  (`max_in_flight`) and is never exceeded.

The limit is a float inside (growth by fractions); callers use `limit`, the whole number of slots.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]

SLOW_START_GROWTH = 1.0  # added to the limit per answered call in slow start
MIN_GRADIENT = 0.5  # a single call's latency shrinks the limit to half at most
PROBE_RISE = 0.1  # a baseline risen by more than this fraction in a window cuts the limit by the rise first


@dataclass(frozen=True)
class LimitSettings:
    """The algorithm's knobs (LLMRoleConfig.adaptive_concurrency gives them from the config)."""

    min_limit: int = 1
    max_limit: int = 8
    initial_limit: int = 4
    backoff_ratio: float = 0.5
    latency_tolerance: float = 2.0
    short_window: int = 10  # calls in the short average
    long_window: int = 500  # calls in a window of the baseline's windowed minimum
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


def in_flight_share(cap: int, *, callers: int) -> int:
    """One caller's share of a role's run-wide cap of requests in flight to one endpoint (`max_in_flight`): the cap
    divided among the `callers` (actors, or the driver) that call it, at least 1. The shares never sum above the cap
    while there are no more callers than the cap (the launch layer keeps them so)."""
    return max(1, cap // max(1, callers))


def _ema_weight(window: int) -> float:
    return 2.0 / (window + 1)


class AdaptiveLimit:
    """The concurrency limit of one endpoint, as its calls answer (see the module's docstring)."""

    def __init__(self, settings: LimitSettings, *, clock: Clock) -> None:
        self.settings = settings
        self._clock = clock
        self._limit = float(min(settings.max_limit, max(settings.min_limit, settings.initial_limit)))
        self._short: float | None = None  # seconds
        self._window_min = math.inf  # the lowest short average of the current window
        self._previous_min = math.inf  # ... of the window before
        self._window_calls = 0
        self._probed = False  # the last window's rise was probed (the next one confirms it)
        self._hold = 0  # answered calls to wait before growing again (after a probe)
        self._proven = 0  # the most calls in flight answered without queueing
        self._slow_start = True
        self._last_backoff: float | None = None
        self._round_started: float | None = None  # when the round trip of the latest latency-driven shrinks began
        self._round_floor = 0.0  # ... and the lowest they may take the limit to in it
        self.highest = self.limit
        self.probes = 0  # times a risen baseline cut the limit (see the module's docstring)

    @property
    def limit(self) -> int:
        """Calls that may be in flight now: at least min_limit, at most the cap."""
        return max(self.settings.min_limit, min(self.settings.max_limit, math.floor(self._limit)))

    @property
    def baseline(self) -> float | None:
        """The endpoint's latency when it is not queueing our calls, as learned (None before the first answer)."""
        low = min(self._window_min, self._previous_min)
        return None if math.isinf(low) else low

    def on_success(self, latency_s: float, *, in_flight: int) -> int:
        """An answered call: its latency, and the calls in flight when it was sent (itself included)."""
        s = self.settings
        latency_s = max(latency_s, 1e-6)
        if self._short is None:
            self._short = latency_s
        else:
            self._short += _ema_weight(s.short_window) * (latency_s - self._short)
        short = self._short
        self._window_min = min(self._window_min, short)
        self._window_calls += 1
        if self._window_calls >= s.long_window:
            self._next_window()
        baseline = self.baseline
        assert baseline is not None
        halfway = (1 + s.latency_tolerance) / 2 * baseline
        if latency_s <= halfway:  # this call did not queue: the endpoint served `in_flight` at once
            self._proven = max(self._proven, in_flight)
        gradient = max(MIN_GRADIENT, min(1.0, s.latency_tolerance * baseline / short))
        queueing = short > halfway
        if queueing and self._slow_start:
            # Slow start ends: the limit to the Vegas estimate of the capacity, undoing the round trip's overshoot.
            self._shrink(max(self._floor(short), float(s.min_limit), float(self._proven), in_flight * baseline / short))
        if self._hold > 0:
            self._hold -= 1
        if gradient < 1.0:
            self._shrink(max(self._floor(short), self._limit * (1 - s.smoothing + s.smoothing * gradient)))
        elif not queueing and self._hold == 0 and in_flight * 2 >= self._limit:
            if self._slow_start:  # doubling a round trip, never past twice what answered without queueing
                self._limit = min(self._limit + SLOW_START_GROWTH, max(self._limit, 2.0 * self._proven))
            else:
                self._limit += 1.0 / self._limit
        return self._settle()

    def _floor(self, round_trip: float) -> float:
        """The lowest a latency-driven shrink may take the limit now: half the limit at the start of the round trip."""
        now = self._clock()
        if self._round_started is None or now - self._round_started >= round_trip:
            self._round_started, self._round_floor = now, self._limit * MIN_GRADIENT
        return self._round_floor

    def _next_window(self) -> None:
        """A window of long_window calls is over. Its lowest short average becomes the previous window's, unless it
        is higher than the baseline: then, the first time, the baseline stays and the limit is cut by the rise and
        held for a few calls (a probe: our own queue drains); a second higher window in a row is the endpoint's new
        baseline (see the module's docstring)."""
        before, new = self.baseline, self._window_min
        self._window_min, self._window_calls = math.inf, 0
        if before is not None and new > before * (1 + PROBE_RISE) and not self._probed:
            self._probed = True
            self.probes += 1
            self._shrink(self._limit * before / new)
            self._hold = 2 * self.settings.short_window
            self._previous_min = before
            return
        self._probed = False
        self._previous_min = new

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
