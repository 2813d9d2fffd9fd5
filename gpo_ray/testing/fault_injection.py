"""The fake server's injected faults at run time: which one hits a chat request, and how it is answered.

Faults come from markers in the prompt, the config's `fail_first_n` and rates (faults.py decides among them), and
from faults switched on for a while at run time (POST /faults, benchmarks/chaos.py): rates for the next seconds,
replacing the earlier timed ones, and an outage - "refuse" (the server stops listening; requests on open
connections are cut) or "503" (every request gets 503). `FaultInjector` holds that state and writes the responses
a real endpoint's failures look like: an HTTP error with Retry-After, a hung request, a body that is not JSON, a
body that never ends or stops arriving.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiohttp import web

from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.faults import (
    REPLY_SHAPING_FAULTS,
    choose_fault,
    error_body,
    error_response,
    fault_markers,
    is_fault_name,
)
from gpo_ray.testing.recording import Recorder


class FaultInjector:
    """The faults of one fake server: the config's, the timed ones, an outage. `start` on the server's event loop;
    `release` lets hung and stalled requests go (the server stops)."""

    def __init__(self, config: FakeLLMConfig, recorder: Recorder) -> None:
        self.config = config
        self.recorder = recorder
        self.stopping: asyncio.Event | None = None
        self._timed_rates: dict[str, float] = {}
        self._timed_rates_until = 0.0
        self._outage_until = 0.0
        self._outage_mode = "refuse"

    def start(self) -> None:
        self.stopping = asyncio.Event()

    def release(self) -> None:
        if self.stopping is not None:
            self.stopping.set()

    # --- timed faults and outages ---

    def timed_faults(self) -> dict[str, Any]:
        """The run-time faults in force now: extra rates and an outage, with the seconds each has left."""
        now = time.monotonic()
        rates_left = max(0.0, self._timed_rates_until - now)
        outage_left = max(0.0, self._outage_until - now)
        return {"rates": dict(self._timed_rates) if rates_left else {}, "rates_left_s": rates_left,
                "outage": self._outage_mode if outage_left else None, "outage_left_s": outage_left}

    def set_timed(self, *, rates: dict[str, float] | None, for_s: float, outage_s: float, outage: str) -> bool:
        """Switch timed faults on (FakeLLMServer.set_timed_faults); True when a "refuse" outage begins (the server
        then stops listening). Raises ValueError on a bad fault name, rate or mode."""
        given = rates is not None
        rates = dict(rates or {})
        for name, rate in rates.items():
            if not is_fault_name(name) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
                raise ValueError(f"bad timed fault {name!r}: {rate!r} (a fault name and a rate in [0, 1])")
        if outage not in ("refuse", "503") or for_s < 0 or outage_s < 0:
            raise ValueError("outage must be 'refuse' or '503', and durations must not be negative")
        now = time.monotonic()
        if given:  # given rates replace the earlier ones; {} ends them
            self._timed_rates, self._timed_rates_until = rates, now + for_s
        if outage_s > 0:
            self._outage_until, self._outage_mode = now + outage_s, outage
            return outage == "refuse"
        return False

    def in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def outage_response(self, request: web.Request) -> web.Response:
        """During an outage: 503, or (refuse) the connection cut without an answer."""
        self.recorder.fault("outage")
        if self._outage_mode == "refuse":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)  # never reaches the client
        status, body, headers = error_response("503", retry_after_s=self.config.retry_after_s)
        return self.recorder.respond(status, body, headers)

    def active_rates(self) -> dict[str, float]:
        rates = self.config.all_fault_rates()
        if self._timed_rates and time.monotonic() < self._timed_rates_until:
            rates = rates | self._timed_rates
        return rates

    # --- one chat request ---

    def choose(self, messages: list[dict], *, fingerprint: str, times_seen: int, arrival: int
               ) -> tuple[str | None, list[str]]:
        """The fault for this attempt (None: none) and the request's [[fault:...]] markers."""
        markers = fault_markers("\n".join(str(m.get("content") or "") for m in messages))
        fault = choose_fault(markers, fail_first_n=self.config.fail_first_n, fault_rates=self.active_rates(),
                             fingerprint=fingerprint, times_seen=times_seen, arrival=arrival)
        return fault, markers

    async def response(self, fault: str, request: web.Request) -> web.StreamResponse | None:
        """The response for a fault, or None when the fault shapes a normal reply (empty, nomarkers)."""
        assert self.stopping is not None, "start the fault injector first"
        if fault == "hang":
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=self.config.hang_s)
            # Counted as a fault only: by now the client has given up, so no status reached it.
            return web.json_response(error_body("hung request released", type_="server_error"), status=504)
        if fault == "malformed":
            self.recorder.status(200)
            return web.Response(status=200, text="{this is not json", content_type="application/json")
        if fault in ("oversized", "stall"):
            self.recorder.status(200)
            return await self._endless_reply(request, oversized=fault == "oversized")
        if fault in REPLY_SHAPING_FAULTS:
            return None
        status, body, headers = error_response(fault, retry_after_s=self.config.retry_after_s)
        return self.recorder.respond(status, body, headers)

    async def _endless_reply(self, request: web.Request, *, oversized: bool) -> web.StreamResponse:
        """A 200 chat completion, chunked with no length given, whose content never ends in time: `oversized` sends
        `oversized_bytes` of it as fast as the client takes them, else (a stall) the first bytes, then nothing."""
        assert self.stopping is not None
        reply = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await reply.prepare(request)
        head = b'{"id": "chatcmpl-endless", "object": "chat.completion", "choices": [{"index": 0, "message": ' \
               b'{"role": "assistant", "content": "'
        try:
            await reply.write(head)
            if not oversized:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.config.hang_s)
                return reply
            chunk = b"x" * 65_536
            sent = len(head)
            while sent < self.config.oversized_bytes and not self.stopping.is_set():
                await reply.write(chunk)
                sent += len(chunk)
                self.recorder.oversized_sent(len(chunk))
            await reply.write(b'"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}')
            await reply.write_eof()
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass  # the client stopped reading and went away, as it should
        return reply
