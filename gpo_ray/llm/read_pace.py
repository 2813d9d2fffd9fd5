"""When a reply body that has begun has stopped: the idle-read limit, learned from the endpoint's own bodies.

A stalled body (headers and the first bytes, then nothing: an overloaded proxy, a wedged server) used to hold its
request, and its in-flight slot, for the whole `read_timeout_s` (10 s) before it was retried. Yet once a body has
begun, a healthy endpoint's next bytes come at that endpoint's own pace: at once for a body that was whole before it
was sent (a non-streamed reply of OpenAI, vLLM or llama.cpp arrives in one piece), a token's time apart for one
written as it is generated. So a body that has begun is cut as stalled after `floor_s` of silence, or after
`GAP_FACTOR` times the longest gap seen in this endpoint's recent bodies or in this body so far, when that is longer;
never later than `read_timeout_s`. The wait for a body's first bytes (a long think after early headers) is not
shortened: `read_timeout_s` alone bounds it, as before.

An endpoint whose bodies pause longer than the floor is not cut forever: each cut in a row, with no body read in
between, doubles the floor for the next body, so after a few cuts its bodies come through and their gaps are learnt.

Pure: no I/O, no clock. One per transport (one endpoint, one process): llm/transport.py asks it and tells it.
"""

from __future__ import annotations

from collections import deque

GAP_FACTOR = 4.0  # a body that has begun may be silent this many times the longest gap its endpoint has shown
RECENT_BODIES = 64  # the bodies whose longest gap is remembered
MAX_DOUBLINGS = 6  # cuts in a row double the floor at most this often (64x)


class ReadPace:
    """The idle-read limit of one endpoint's reply bodies. `floor_s` None: no idle limit, `ceiling_s` alone (the
    read timeout; None: none)."""

    def __init__(self, *, floor_s: float | None, ceiling_s: float | None) -> None:
        self.floor_s = floor_s
        self.ceiling_s = ceiling_s
        self._longest_gaps: deque[float] = deque(maxlen=RECENT_BODIES)
        self._cuts_in_a_row = 0

    def idle_limit(self, longest_gap_s: float) -> float | None:
        """How long a body that has begun, and has so far paused at most `longest_gap_s`, may now be silent."""
        if self.floor_s is None:
            return self.ceiling_s
        learned = GAP_FACTOR * max(longest_gap_s, max(self._longest_gaps, default=0.0))
        limit = max(self.floor_s * 2 ** min(self._cuts_in_a_row, MAX_DOUBLINGS), learned)
        return limit if self.ceiling_s is None else min(limit, self.ceiling_s)

    def body_read(self, longest_gap_s: float) -> None:
        """A body came whole; its longest pause between two arrivals of bytes (the end included) was `longest_gap_s`."""
        self._longest_gaps.append(longest_gap_s)
        self._cuts_in_a_row = 0

    def body_cut(self) -> None:
        """A body that had begun was cut by the idle limit."""
        self._cuts_in_a_row += 1
