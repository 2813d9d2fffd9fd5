"""The fake OpenAI-compatible endpoint: `ScriptedLLM` over HTTP, with faults, service slots and counters.

The HTTP server exists for what only HTTP can test: the real client's transport, retries on 429/5xx with
Retry-After, bad keys, hung and malformed responses, and concurrency as an endpoint sees it (GET /stats,
GET /timeline). It serves loopback only; `gpo-ray fake-llm` runs it on its own. POST /faults switches faults on
for a while at run time (benchmarks/chaos.py): rates for the next seconds, or an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import ChatMessage, ChatRequest, approx_tokens
from gpo_ray.loopback import LOOPBACK_HOST, is_loopback
from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.faults import (
    REPLY_SHAPING_FAULTS,
    bad_key_body,
    choose_fault,
    error_body,
    error_response,
    fault_markers,
    is_fault_name,
)
from gpo_ray.testing.hashing import request_fingerprint, unit_interval
from gpo_ray.testing.scripted import ScriptedLLM
from gpo_ray.testing.stats import ServerStats


def chat_request(body: dict[str, Any]) -> ChatRequest:
    """The ChatRequest an OpenAI chat-completions body asks for (the body's messages are already checked)."""
    fmt = body.get("response_format") or {}
    schema = None
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or {}  # JSON was asked for, even without a schema
    stop = body.get("stop")
    return ChatRequest(
        messages=tuple(ChatMessage(str(m.get("role") or ""), str(m.get("content") or "")) for m in body["messages"]),
        max_tokens=body.get("max_tokens") or body.get("max_completion_tokens"),
        seed=body.get("seed"),
        json_schema=schema,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
    )


class FakeLLMServer:
    """The fake endpoint, run in-process: `url = await server.start()`, then `await server.stop()`."""

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self.model = ScriptedLLM(self.config)
        self._stats = ServerStats()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._slots: asyncio.Semaphore | None = None
        self._gate: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._expected_key: str | None = None
        self._log = structlog.get_logger(__name__)
        # Run-time faults (POST /faults): extra rates until a deadline, and an outage until another.
        self._timed_rates: dict[str, float] = {}
        self._timed_rates_until = 0.0
        self._outage_until = 0.0
        self._outage_mode = "refuse"
        self._listen: tuple[str, int] | None = None
        self._reopen: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fake LLM server has not been started")
        return self._base_url

    def stats(self) -> dict[str, Any]:
        return self._stats.as_dict()

    def timeline(self) -> list[tuple[float, float, str]]:
        """(start, end, role) of every request served since the last reset, if `record_timeline` is on."""
        return list(self._stats.timeline)

    def requests_log(self) -> list[dict]:
        """Every request served since the last reset, if `record_requests` is on."""
        return list(self._stats.requests_log)

    def reset(self) -> None:
        self._stats = ServerStats()

    async def start(self, host: str = LOOPBACK_HOST, port: int = 0) -> str:
        if not is_loopback(host):
            raise ValueError(f"the fake LLM server binds to loopback only, not {host!r}")
        if self.config.api_key_env is not None:
            self._expected_key = os.environ.get(self.config.api_key_env)
            if not self._expected_key:
                raise ConfigError(f"fake LLM server: the environment variable {self.config.api_key_env} is not set")
        self._slots = asyncio.Semaphore(self.config.concurrency)
        self._gate = asyncio.Event()
        self._gate.set()
        self._stopping = asyncio.Event()
        self._changed = asyncio.Condition()
        app = web.Application(client_max_size=16 * 1024 * 1024)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/stats", self._stats_route)
        app.router.add_get("/timeline", self._timeline_route)
        app.router.add_post("/reset", self._reset_route)
        app.router.add_get("/faults", self._faults_route)
        app.router.add_post("/faults", self._faults_route)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
        self._listen = (host, bound_port)
        shown = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{shown}:{bound_port}/v1"
        self._log.info("fake_llm_started", base_url=self._base_url)
        return self._base_url

    async def stop(self) -> None:
        if self._runner is None:
            return
        assert self._stopping is not None and self._gate is not None
        self._stopping.set()  # releases hung requests
        self._gate.set()
        if self._reopen is not None:
            self._reopen.cancel()
        runner, self._runner = self._runner, None
        await runner.cleanup()  # base_url stays readable: tests use it to reach a server that is gone

    # Test hooks: hold requests in service to observe concurrency without timing.
    def pause(self) -> None:
        """Requests that get a slot wait in service until `resume()`."""
        assert self._gate is not None, "start the server first"
        self._gate.clear()

    def resume(self) -> None:
        assert self._gate is not None, "start the server first"
        self._gate.set()

    async def wait_in_service(self, n: int) -> None:
        """Return once at least n requests are in service (use with `pause`)."""
        assert self._changed is not None, "start the server first"
        async with self._changed:
            await self._changed.wait_for(lambda: self._stats.in_service >= n)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # --- routes ---

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _stats_route(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _timeline_route(self, request: web.Request) -> web.Response:
        return web.json_response({"intervals": self.timeline()})

    async def _reset_route(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "reset"})

    def timed_faults(self) -> dict[str, Any]:
        """The run-time faults in force now: extra rates and an outage, with the seconds each has left."""
        now = time.monotonic()
        rates_left = max(0.0, self._timed_rates_until - now)
        outage_left = max(0.0, self._outage_until - now)
        return {"rates": dict(self._timed_rates) if rates_left else {}, "rates_left_s": rates_left,
                "outage": self._outage_mode if outage_left else None, "outage_left_s": outage_left}

    async def set_timed_faults(self, *, rates: dict[str, float] | None = None, for_s: float = 0.0,
                               outage_s: float = 0.0, outage: str = "refuse") -> dict[str, Any]:
        """Faults switched on at run time for a while (chaos runs): `rates` (fault name -> rate per attempt, as
        `fault_rates`) for the next `for_s` seconds, replacing earlier timed rates; and/or an outage of
        `outage_s` seconds - "refuse": the port stops listening and requests on open connections are cut,
        "503": every request gets 503. Raises ValueError on a bad fault name, rate or mode."""
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
            if outage == "refuse":
                await self._stop_listening(outage_s)
        return self.timed_faults()

    async def _stop_listening(self, seconds: float) -> None:
        assert self._runner is not None and self._listen is not None
        for site in list(self._runner.sites):
            await site.stop()  # closes the listening socket: new connections are refused
        if self._reopen is not None:
            self._reopen.cancel()
        self._reopen = asyncio.create_task(self._listen_again(seconds))

    async def _listen_again(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self._runner is None or self._listen is None:
            return
        host, port = self._listen
        await web.TCPSite(self._runner, host, port, reuse_address=True).start()
        self._log.info("fake_llm_listening_again", port=port)

    def _in_outage(self) -> bool:
        return time.monotonic() < self._outage_until

    def _outage_response(self, request: web.Request) -> web.Response:
        """During an outage: 503, or (refuse) the connection cut without an answer."""
        self._stats.faults["outage"] += 1
        if self._outage_mode == "refuse":
            if request.transport is not None:
                request.transport.close()
            return web.Response(status=503)  # never reaches the client
        status, body, headers = error_response("503", retry_after_s=self.config.retry_after_s)
        return self._status(status, body, headers)

    def _active_fault_rates(self) -> dict[str, float]:
        rates = self.config.all_fault_rates()
        if self._timed_rates and time.monotonic() < self._timed_rates_until:
            rates = rates | self._timed_rates
        return rates

    async def _faults_route(self, request: web.Request) -> web.Response:
        if request.method == "GET":
            return web.json_response(self.timed_faults())
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            state = await self.set_timed_faults(
                rates=body.get("rates"), for_s=float(body.get("for_s", 0)), outage_s=float(body.get("outage_s", 0)),
                outage=str(body.get("outage", "refuse")))
        except (ValueError, TypeError) as e:
            return web.json_response(error_body(str(e), type_="invalid_request_error"), status=400)
        return web.json_response(state)

    async def _models(self, request: web.Request) -> web.Response:
        model = {"id": self.config.model_name, "object": "model", "created": 0, "owned_by": "gpo-ray-fake"}
        return web.json_response({"object": "list", "data": [model]})

    def _authorized(self, request: web.Request) -> bool:
        if self._expected_key is None:
            return True
        header = request.headers.get("Authorization", "")
        given = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        return hmac.compare_digest(given.encode(), self._expected_key.encode())

    @staticmethod
    def _bad_key_body(request: web.Request) -> dict[str, Any]:
        return bad_key_body(request.headers.get("Authorization", ""))

    async def _embeddings(self, request: web.Request) -> web.Response:
        self._stats.embedding_requests += 1
        if self._in_outage():
            return self._outage_response(request)
        if not self._authorized(request):
            return web.json_response(self._bad_key_body(request), status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(error_body("body is not JSON", type_="invalid_request_error"), status=400)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            problem = error_body("input must be a string or a list of strings", type_="invalid_request_error")
            return web.json_response(problem, status=400)
        dim = int(body.get("dimensions") or self.config.embedding_dim)
        vectors = self.model.embed(texts, dimensions=dim)
        data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
        tokens = sum(approx_tokens(t) for t in texts)
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model", self.config.model_name),
             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.requests += 1
        arrival = stats.requests
        if self._in_outage():
            return self._outage_response(request)
        try:
            body = await request.json()
        except ValueError:
            return self._status(400, error_body("body is not JSON", type_="invalid_request_error"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return self._status(400, error_body("messages must be a non-empty list", type_="invalid_request_error"))
        fingerprint = request_fingerprint(body)
        stats.seen[fingerprint] += 1
        times_seen = stats.seen[fingerprint]
        if not self._authorized(request):
            return self._status(401, self._bad_key_body(request))

        markers = fault_markers("\n".join(str(m.get("content") or "") for m in messages))
        fault = choose_fault(markers, fail_first_n=self.config.fail_first_n, fault_rates=self._active_fault_rates(),
                             fingerprint=fingerprint, times_seen=times_seen, arrival=arrival)
        if fault is not None:
            stats.faults[fault] += 1
            response = await self._fault_response(fault, request)
            if response is not None:
                return response
        nomarkers = fault == "nomarkers" or "nomarkers" in markers
        if nomarkers and fault != "nomarkers":
            stats.faults["nomarkers"] += 1

        assert self._slots is not None and self._gate is not None
        async with self._slots:
            stats.in_service += 1
            stats.peak_in_service = max(stats.peak_in_service, stats.in_service)
            await self._notify()
            try:
                await self._gate.wait()
                served_from = time.monotonic()
                delay = self._latency(fingerprint, times_seen)
                if delay > 0:
                    await asyncio.sleep(delay)
                reply = self.model.reply(chat_request(body), markers=not nomarkers)
            finally:
                stats.in_service -= 1
                await self._notify()
        if fault == "empty":
            empty = {"id": f"chatcmpl-{fingerprint[:12]}", "object": "chat.completion", "created": 0, "choices": []}
            return self._ok(empty)
        stats.completed += 1
        stats.answered[fingerprint] += 1
        stats.roles[reply.role] += 1
        if self.config.record_timeline:
            stats.timeline.append((served_from, time.monotonic(), reply.role))
        if self.config.record_requests:
            stats.requests_log.append({"role": reply.role, "model": body.get("model"),
                                       "text": str(messages[-1].get("content") or ""),
                                       "temperature": body.get("temperature"), "max_tokens": body.get("max_tokens")})
        stats.prompt_tokens += reply.usage.prompt_tokens
        stats.completion_tokens += reply.usage.completion_tokens
        return self._ok(
            {
                "id": f"chatcmpl-{fingerprint[:12]}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model") or self.config.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.text},
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": {
                    "prompt_tokens": reply.usage.prompt_tokens,
                    "completion_tokens": reply.usage.completion_tokens,
                    "total_tokens": reply.usage.total_tokens,
                },
            }
        )

    def _ok(self, payload: dict[str, Any]) -> web.Response:
        self._stats.status["200"] += 1
        return web.json_response(payload)

    def _status(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        self._stats.status[str(status)] += 1
        return web.json_response(payload, status=status, headers=headers)

    async def _endless_reply(self, request: web.Request, *, oversized: bool) -> web.StreamResponse:
        """A 200 chat completion, chunked with no length given, whose content never ends in time: `oversized` sends
        `oversized_bytes` of it as fast as the client takes them, else (a stall) the first bytes, then nothing."""
        assert self._stopping is not None
        reply = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        await reply.prepare(request)
        head = b'{"id": "chatcmpl-endless", "object": "chat.completion", "choices": [{"index": 0, "message": ' \
               b'{"role": "assistant", "content": "'
        try:
            await reply.write(head)
            if not oversized:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), timeout=self.config.hang_s)
                return reply
            chunk = b"x" * 65_536
            sent = len(head)
            while sent < self.config.oversized_bytes and not self._stopping.is_set():
                await reply.write(chunk)
                sent += len(chunk)
                self._stats.oversized_bytes_sent += len(chunk)
            await reply.write(b'"}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}')
            await reply.write_eof()
        except (ConnectionResetError, ConnectionError, RuntimeError):
            pass  # the client stopped reading and went away, as it should
        return reply

    async def _fault_response(self, fault: str, request: web.Request) -> web.StreamResponse | None:
        """The response for a fault, or None when the fault shapes a normal reply (empty, nomarkers)."""
        if fault == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.config.hang_s)
            except TimeoutError:
                pass
            # Counted as a fault only: by now the client has given up, so no status reached it.
            return web.json_response(error_body("hung request released", type_="server_error"), status=504)
        if fault == "malformed":
            self._stats.status["200"] += 1
            return web.Response(status=200, text="{this is not json", content_type="application/json")
        if fault in ("oversized", "stall"):
            self._stats.status["200"] += 1
            return await self._endless_reply(request, oversized=fault == "oversized")
        if fault in REPLY_SHAPING_FAULTS:
            return None
        status, body, headers = error_response(fault, retry_after_s=self.config.retry_after_s)
        return self._status(status, body, headers)

    def _latency(self, fingerprint: str, times_seen: int) -> float:
        latency = self.config.latency_s
        if isinstance(latency, tuple):
            low, high = latency
            return low + (high - low) * unit_interval("latency", fingerprint, times_seen)
        return float(latency)


def run_fake_llm(
    *,
    host: str = LOOPBACK_HOST,
    port: int = 8000,
    config: FakeLLMConfig | None = None,
    config_path: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake endpoint until interrupted (the `gpo-ray fake-llm` command). `on_ready` gets the base URL."""
    if config is None:
        config = FakeLLMConfig.from_file(config_path) if config_path is not None else FakeLLMConfig()

    async def serve() -> None:
        server = FakeLLMServer(config)
        url = await server.start(host=host, port=port)
        if on_ready is not None:
            on_ready(url)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    try:
        asyncio.run(serve())
    except KeyboardInterrupt:
        pass
