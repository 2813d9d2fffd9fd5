"""The fake OpenAI-compatible endpoint: `ScriptedLLM` over HTTP, with faults, service slots and counters.

The HTTP server exists for what only HTTP can test: the real client's transport, retries on 429/5xx with
Retry-After, bad keys, hung and malformed responses, and concurrency as an endpoint sees it (GET /stats,
GET /timeline). It serves loopback only; `gpo-ray fake-llm` runs it on its own. POST /faults switches faults on
for a while at run time (benchmarks/chaos.py): rates for the next seconds, or an outage.

`FakeLLMServer` holds the HTTP side - the routes, the listening socket, the service slots and the test hooks that
hold requests in service - and hands the rest to three parts:

- routing.py: which scripted model answers a chat request - by its X-GPO-Purpose (and X-GPO-Role) header, which
  gpo-ray's transport sends; only a request without them (made by hand) is told apart by its prose. An unknown
  value in either header is answered with 400.
- fault_injection.py (`FaultInjector`): which fault hits a request and its response; timed faults and outages.
- recording.py (`Recorder`): the counters, the timeline and the request log.
"""

from __future__ import annotations

import asyncio
import hmac
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog
from aiohttp import web

from gpo_ray.errors import ConfigError
from gpo_ray.llm.protocol import PURPOSE_HEADER, ROLE_HEADER, approx_tokens
from gpo_ray.loopback import LOOPBACK_HOST, is_loopback
from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.fault_injection import FaultInjector
from gpo_ray.testing.faults import bad_key_body, error_body
from gpo_ray.testing.hashing import request_fingerprint, unit_interval
from gpo_ray.testing.recording import ChatRecord, Recorder
from gpo_ray.testing.routing import UnknownMetadata, chat_request, metadata, route
from gpo_ray.testing.scripted import ScriptedLLM


class FakeLLMServer:
    """The fake endpoint, run in-process: `url = await server.start()`, then `await server.stop()`."""

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self.model = ScriptedLLM(self.config)
        self.recorder = Recorder(self.config)
        self.faults = FaultInjector(self.config, self.recorder)
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._slots: asyncio.Semaphore | None = None
        self._gate: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._expected_key: str | None = None
        self._log = structlog.get_logger(__name__)
        self._listen: tuple[str, int] | None = None
        self._reopen: asyncio.Task[None] | None = None

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("the fake LLM server has not been started")
        return self._base_url

    def stats(self) -> dict[str, Any]:
        return self.recorder.as_dict()

    def timeline(self) -> list[tuple[float, float, str]]:
        """(start, end, role) of every request served since the last reset, if `record_timeline` is on."""
        return self.recorder.timeline()

    def requests_log(self) -> list[dict]:
        """Every request served since the last reset, if `record_requests` is on: the scripted model that answered
        ("role"), the body's model, last message text, temperature and max_tokens, the X-GPO-Role and X-GPO-Purpose
        headers ("sent_role", "sent_purpose": None when absent) and what routed it ("routed_by")."""
        return self.recorder.requests_log()

    def reset(self) -> None:
        self.recorder.reset()

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
        self.faults.start()
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
        assert self._gate is not None
        self.faults.release()  # releases hung requests
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
            await self._changed.wait_for(lambda: self.recorder.in_service >= n)

    async def _notify(self) -> None:
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    # --- run-time faults ---

    def timed_faults(self) -> dict[str, Any]:
        """The run-time faults in force now: extra rates and an outage, with the seconds each has left."""
        return self.faults.timed_faults()

    async def set_timed_faults(self, *, rates: dict[str, float] | None = None, for_s: float = 0.0,
                               outage_s: float = 0.0, outage: str = "refuse") -> dict[str, Any]:
        """Faults switched on at run time for a while (chaos runs): `rates` (fault name -> rate per attempt, as
        `fault_rates`) for the next `for_s` seconds, replacing earlier timed rates; and/or an outage of
        `outage_s` seconds - "refuse": the port stops listening and requests on open connections are cut,
        "503": every request gets 503. Raises ValueError on a bad fault name, rate or mode."""
        if self.faults.set_timed(rates=rates, for_s=for_s, outage_s=outage_s, outage=outage):
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
        self.recorder.embedding()
        if self.faults.in_outage():
            return self.faults.outage_response(request)
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
        record = self.recorder.chat()
        record.opened()
        try:
            return await self._answer_chat(request, record)
        finally:
            record.closed()

    async def _answer_chat(self, request: web.Request, record: ChatRecord) -> web.StreamResponse:
        respond = self.recorder.respond
        if self.faults.in_outage():
            return self.faults.outage_response(request)
        try:
            body = await request.json()
        except ValueError:
            return respond(400, error_body("body is not JSON", type_="invalid_request_error"))
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return respond(400, error_body("messages must be a non-empty list", type_="invalid_request_error"))
        try:
            sent_role, sent_purpose = metadata(request.headers.get(ROLE_HEADER), request.headers.get(PURPOSE_HEADER))
        except UnknownMetadata as e:
            return respond(400, error_body(str(e), type_="invalid_request_error"))
        fingerprint = request_fingerprint(body)
        times_seen = record.seen(fingerprint)
        if not self._authorized(request):
            return respond(401, self._bad_key_body(request))

        fault, markers = self.faults.choose(messages, fingerprint=fingerprint, times_seen=times_seen,
                                            arrival=record.arrival)
        if fault is not None:
            record.fault(fault)
            response = await self.faults.response(fault, request)
            if response is not None:
                return response
        nomarkers = fault == "nomarkers" or "nomarkers" in markers
        if nomarkers and fault != "nomarkers":
            record.fault("nomarkers")

        chat = chat_request(body, purpose=sent_purpose)
        routed = route(chat, role=sent_role)
        assert self._slots is not None and self._gate is not None
        async with self._slots:
            record.enter_service()
            await self._notify()
            try:
                await self._gate.wait()
                served_from = time.monotonic()
                delay = self._latency(fingerprint, times_seen)
                if delay > 0:
                    await asyncio.sleep(delay)
                reply = self.model.answer(chat, routed, markers=not nomarkers)
            finally:
                record.leave_service()
                await self._notify()
        if fault == "empty":
            empty = {"id": f"chatcmpl-{fingerprint[:12]}", "object": "chat.completion", "created": 0, "choices": []}
            return respond(200, empty)
        record.answered(reply, fingerprint=fingerprint, body=body, served=(served_from, time.monotonic()),
                        sent_role=sent_role, sent_purpose=sent_purpose)
        return respond(
            200,
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
            },
        )

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
