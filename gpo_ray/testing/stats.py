"""What the fake server counts (GET /stats): tests check what a client really sent, benchmarks what was served."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any


def most_in_any_window(times: Iterable[float], window_s: float) -> int:
    """The most events (e.g. requests served, by the timeline's start times) in any `window_s` seconds: what a
    per-minute rate limit is about."""
    ordered = sorted(times)
    most, first = 0, 0
    for last, t in enumerate(ordered):
        while t - ordered[first] >= window_s:
            first += 1
        most = max(most, last - first + 1)
    return most


class ServerStats:
    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.in_service = 0
        self.peak_in_service = 0
        # Chat requests open at once, those waiting for a service slot included: the concurrency a client sends
        # (peak_in_service stops at the fake's `concurrency`).
        self.open = 0
        self.peak_open = 0
        self.status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.roles: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seen: Counter[str] = Counter()  # arrivals per request fingerprint
        self.answered: Counter[str] = Counter()  # successful replies per fingerprint
        self.embedding_requests = 0
        self.oversized_bytes_sent = 0  # of [[fault:oversized]] bodies: what the client read (or the kernel took)
        self.timeline: list[tuple[float, float, str]] = []  # (service start, end, role), monotonic seconds
        # record_requests: role (the scripted model), model, text (last message), temperature, max_tokens, sent_role,
        # sent_purpose (the X-GPO-Role and X-GPO-Purpose headers, None when absent), routed_by (routing.py)
        self.requests_log: list[dict] = []

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "in_service": self.in_service,
            "peak_in_service": self.peak_in_service,
            "peak_open": self.peak_open,
            "status": dict(sorted(self.status.items())),
            "faults": dict(sorted(self.faults.items())),
            "roles": dict(sorted(self.roles.items())),
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "unique_requests": len(self.seen),
            # Arrivals that repeat an earlier request (retries included) ...
            "repeated_requests": sum(n - 1 for n in self.seen.values()),
            # ... and successful answers given again to a request answered before: should be 0 with a cache.
            "duplicates": sum(n - 1 for n in self.answered.values()),
            "embedding_requests": self.embedding_requests,
            "oversized_bytes_sent": self.oversized_bytes_sent,
        }
