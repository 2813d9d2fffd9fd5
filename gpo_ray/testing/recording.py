"""What the fake server keeps of the requests it serves: the counters (GET /stats), the service intervals (GET
/timeline, with `record_timeline`) and the requests themselves (`requests_log`, with `record_requests`).

A chat request is recorded in the counters that were current when it arrived (`Recorder.chat`): a reset while it
is in service does not move it, so the counters after a reset never go negative.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.scripted import ScriptedReply
from gpo_ray.testing.stats import ServerStats


class Recorder:
    """The fake server's counters and logs since the last reset."""

    def __init__(self, config: FakeLLMConfig) -> None:
        self.config = config
        self.stats = ServerStats()

    def reset(self) -> None:
        self.stats = ServerStats()

    def as_dict(self) -> dict[str, Any]:
        return self.stats.as_dict()

    def timeline(self) -> list[tuple[float, float, str]]:
        return list(self.stats.timeline)

    def requests_log(self) -> list[dict]:
        return list(self.stats.requests_log)

    @property
    def in_service(self) -> int:
        return self.stats.in_service

    def chat(self) -> ChatRecord:
        """A chat request arrived: its record, in the counters current now."""
        stats = self.stats
        stats.requests += 1
        return ChatRecord(self.config, stats, arrival=stats.requests)

    def embedding(self) -> None:
        self.stats.embedding_requests += 1

    def fault(self, name: str) -> None:
        self.stats.faults[name] += 1

    def oversized_sent(self, size: int) -> None:
        self.stats.oversized_bytes_sent += size

    def status(self, status: int) -> None:
        self.stats.status[str(status)] += 1

    def respond(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        """A JSON response with its status counted."""
        self.status(status)
        return web.json_response(payload, status=status, headers=headers)


class ChatRecord:
    """One chat request's entries in the counters current at its arrival (`arrival`: its number among them)."""

    def __init__(self, config: FakeLLMConfig, stats: ServerStats, *, arrival: int) -> None:
        self.config = config
        self.stats = stats
        self.arrival = arrival

    def seen(self, fingerprint: str) -> int:
        """Count an arrival of this request body; how many times it has been seen, this one included."""
        self.stats.seen[fingerprint] += 1
        return self.stats.seen[fingerprint]

    def fault(self, name: str) -> None:
        self.stats.faults[name] += 1

    def opened(self) -> None:
        self.stats.open += 1
        self.stats.peak_open = max(self.stats.peak_open, self.stats.open)

    def closed(self) -> None:
        self.stats.open -= 1

    def enter_service(self) -> None:
        self.stats.in_service += 1
        self.stats.peak_in_service = max(self.stats.peak_in_service, self.stats.in_service)

    def leave_service(self) -> None:
        self.stats.in_service -= 1

    def answered(self, reply: ScriptedReply, *, fingerprint: str, body: dict[str, Any], served: tuple[float, float],
                 sent_role: str | None, sent_purpose: str | None) -> None:
        """A scripted reply went out: its counts, its service interval, and (record_requests) what was asked - the
        model named in the body, the last message's text, the sampling, the X-GPO-Role and X-GPO-Purpose headers
        (None when absent) and what routed the request (routing.py: "purpose", "role" or "content")."""
        stats = self.stats
        stats.completed += 1
        stats.answered[fingerprint] += 1
        stats.roles[reply.role] += 1
        stats.prompt_tokens += reply.usage.prompt_tokens
        stats.completion_tokens += reply.usage.completion_tokens
        if self.config.record_timeline:
            stats.timeline.append((served[0], served[1], reply.role))
        if self.config.record_requests:
            messages = body["messages"]
            stats.requests_log.append({
                "role": reply.role, "model": body.get("model"), "text": str(messages[-1].get("content") or ""),
                "temperature": body.get("temperature"), "max_tokens": body.get("max_tokens"),
                "sent_role": sent_role, "sent_purpose": sent_purpose, "routed_by": reply.routed_by,
            })
