"""A scripted, deterministic OpenAI-compatible server for tests and benchmarks (loopback only).

It plays both roles of a GPO run, told apart by the request content:

- an *optimizer* request carries the meta-prompt block "<current_prompt>\\n{prompt}\\n</current_prompt>";
  the reply appends one of `optimizer_phrases` to that prompt: "<START>{candidate}<END>".
- every other request is a *task* request: the server looks the question up in `answer_key` (or
  solves simple arithmetic) and answers correctly with probability base_accuracy + the bonuses of
  the `skill_phrases` present in the request - decided by a hash, so the same request always gets
  the same reply, and a better prompt gets a superset of the right answers.

Faults come from the config (`fail_first_n`, `fault_rates`, ...) or from markers in the prompt text:
[[fault:429]], [[fault:500]], [[fault:401]], [[fault:quota]], [[fault:hang]], [[fault:malformed]],
[[fault:empty]], [[fault:nomarkers]], [[fault:once:500]] (only the first time this request is seen),
[[fault:first:3:429]] (the first three times). Counters at GET /stats let tests check what a client
really sent: requests, statuses, faults, peak concurrency, tokens served and `duplicates`.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import hmac
import json
import math
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpo_ray.errors import ConfigError

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
PROMPT_OPEN = "<current_prompt>\n"
PROMPT_CLOSE = "\n</current_prompt>"
NAMED_FAULTS = frozenset({"hang", "malformed", "empty", "nomarkers", "quota"})
_MARKER = re.compile(r"\[\[fault:([a-z0-9:]+)\]\]")

DEFAULT_OPTIMIZER_PHRASES = (
    "Think step by step.",
    "Check each step carefully before answering.",
    "Restate the question in your own words first.",
    "State the final answer clearly at the end.",
    "Consider every option before choosing.",
)
DEFAULT_SKILL_PHRASES = {
    "step by step": 0.15,
    "carefully": 0.1,
    "final answer": 0.05,
    "every option": 0.05,
}


def _is_fault_name(name: str) -> bool:
    return name in NAMED_FAULTS or (name.isdigit() and len(name) == 3 and 400 <= int(name) <= 599)


class FakeLLMConfig(BaseModel):
    """How the fake behaves. Loadable from YAML/JSON (`gpo-ray fake-llm --config F`)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = "fake-llm"
    latency_s: float | tuple[float, float] = Field(default=0.0, description="fixed, or in [a, b] by request hash")
    concurrency: int = Field(default=64, gt=0, description="requests served at once; the rest queue")
    hang_s: float = Field(default=3600.0, gt=0, description="how long [[fault:hang]] keeps a request open")
    api_key_env: str | None = Field(default=None, description="if set, require this variable's value as the bearer key")
    # Faults. fail_first_n: the first requests to arrive, in dict order: {"429": 2, "500": 1} fails requests 1-2
    # with 429 and request 3 with 500. fault_rates: per attempt, by a hash of the request and its repeat count.
    fail_first_n: dict[str, int] = {}
    fault_rates: dict[str, float] = {}
    error_rate_500: float = Field(default=0.0, ge=0.0, le=1.0)
    error_rate_429: float = Field(default=0.0, ge=0.0, le=1.0)
    retry_after_s: float | None = Field(default=None, ge=0.0, description="sent as Retry-After on 429 and 503")
    # The scripted models.
    optimizer_phrases: list[str] = Field(default_factory=lambda: list(DEFAULT_OPTIMIZER_PHRASES), min_length=1)
    skill_phrases: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SKILL_PHRASES))
    base_accuracy: float = Field(default=0.5, ge=0.0, le=1.0)
    answer_key: dict[str, str] = {}
    embedding_dim: int = Field(default=64, gt=0, le=4096)
    record_timeline: bool = Field(default=False, description="keep (start, end, role) of every served request "
                                  "for GET /timeline (benchmarks: utilization per phase)")

    @field_validator("fail_first_n", "fault_rates")
    @classmethod
    def _known_faults(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, n in v.items():
            if not _is_fault_name(name):
                raise ValueError(f"unknown fault {name!r}: use an HTTP status 400-599 or one of {sorted(NAMED_FAULTS)}")
            if n < 0:
                raise ValueError(f"fault {name!r} must not be negative")
        return v

    def all_fault_rates(self) -> dict[str, float]:
        rates = dict(self.fault_rates)
        if self.error_rate_429:
            rates["429"] = self.error_rate_429
        if self.error_rate_500:
            rates["500"] = self.error_rate_500
        return rates

    @classmethod
    def from_file(cls, path: Path) -> FakeLLMConfig:
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"{path}: cannot read fake LLM config: {type(e).__name__}") from None
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            raise ConfigError(f"{path}: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


def answer_key_from_examples(examples: Iterable[Any]) -> dict[str, str]:
    """Question -> answer, from (input, answer) pairs or objects with `.input` and `.answer` (tasks.types.Example)."""
    key: dict[str, str] = {}
    for ex in examples:
        question, answer = (ex.input, ex.answer) if hasattr(ex, "input") else ex
        if question.strip():
            key[question.strip()] = answer
    return key


# --- the scripted models: pure functions of the request --------------------------------------------


def stable_hash(*parts: object) -> int:
    """A 64-bit hash of the parts that is the same in every process and run."""
    blob = json.dumps([str(p) for p in parts], ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big")


def unit_interval(*parts: object) -> float:
    return stable_hash(*parts) / 2**64


def request_fingerprint(body: dict[str, Any]) -> str:
    blob = json.dumps([body.get("model"), body.get("messages"), body.get("seed")], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def current_prompt_of(text: str) -> str | None:
    """The prompt inside the meta-prompt's <current_prompt> block, or None for a task request."""
    start = text.find(PROMPT_OPEN)
    if start < 0:
        return None
    start += len(PROMPT_OPEN)
    end = text.find(PROMPT_CLOSE, start)
    return text[start:end] if end >= 0 else None


def propose_candidate(current_prompt: str, *, seed: object, phrases: list[str]) -> str:
    """The scripted optimizer's edit: append the first phrase (from a hashed start) not already in the prompt."""
    start = stable_hash("optimizer", current_prompt, seed) % len(phrases)
    for i in range(len(phrases)):
        phrase = phrases[(start + i) % len(phrases)]
        if phrase not in current_prompt:
            return f"{current_prompt} {phrase}".strip()
    return current_prompt


class AnswerKeyIndex:
    """Finds the longest answer-key question contained in a text, without trying every key on every request."""

    PREFIX = 40

    def __init__(self, answer_key: dict[str, str]) -> None:
        self._answers = {q.strip(): a for q, a in answer_key.items() if q.strip()}
        self._by_prefix: dict[str, list[str]] = {}
        short: list[str] = []
        for q in self._answers:
            if len(q) >= self.PREFIX:
                self._by_prefix.setdefault(q[: self.PREFIX], []).append(q)
            else:
                short.append(q)
        for keys in self._by_prefix.values():
            keys.sort(key=len, reverse=True)
        self._short = sorted(short, key=len, reverse=True)

    def find(self, text: str) -> tuple[str, str] | None:
        best: str | None = None
        if self._by_prefix:
            for i in range(len(text) - self.PREFIX + 1):
                for q in self._by_prefix.get(text[i : i + self.PREFIX], ()):
                    if (best is None or len(q) > len(best)) and text.startswith(q, i):
                        best = q
                        break
        for q in self._short:
            if best is not None and len(q) <= len(best):
                break
            if q in text:
                best = q
                break
        return (best, self._answers[best]) if best is not None else None


_WORD_OPERATORS = (
    (re.compile(r"\bmultiplied by\b", re.IGNORECASE), "*"),
    (re.compile(r"\bdivided by\b", re.IGNORECASE), "/"),
    (re.compile(r"\btimes\b", re.IGNORECASE), "*"),
    (re.compile(r"\bplus\b", re.IGNORECASE), "+"),
    (re.compile(r"\bminus\b", re.IGNORECASE), "-"),
)
_EXPRESSION = re.compile(r"[-+*/()\d.\s]+")
_HAS_OPERATION = re.compile(r"\d\s*\)*\s*[-+*/]\s*\(*\s*-?\d")


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        if abs(node.value) > 1e12:
            raise ValueError("number too large")
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        value = _evaluate(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            result = left * right
            if abs(result) > 1e18:
                raise ValueError("result too large")
            return result
        return left / right
    raise ValueError(f"not arithmetic: {type(node).__name__}")


def format_number(value: float) -> str:
    if math.isfinite(value) and abs(value - round(value)) < 1e-9:
        return str(int(round(value)))
    return f"{value:.6g}"


def solve_arithmetic(text: str) -> tuple[str, str] | None:
    """(expression, answer) for the longest evaluable arithmetic expression in the text, e.g. "What is 3 + 4?"."""
    for pattern, operator in _WORD_OPERATORS:
        text = pattern.sub(operator, text)
    best: tuple[str, str] | None = None
    for match in _EXPRESSION.finditer(text):
        expr = match.group().strip().rstrip(".").strip()
        if not _HAS_OPERATION.search(expr) or (best is not None and len(expr) <= len(best[0])):
            continue
        try:
            value = _evaluate(ast.parse(expr, mode="eval"))
        except (SyntaxError, ValueError, ZeroDivisionError, RecursionError, OverflowError):
            continue
        best = (re.sub(r"\s+", "", expr), format_number(value))
    return best


_SWAPS = {"yes": "no", "no": "yes", "true": "false", "false": "true", "valid": "invalid", "invalid": "valid"}


def wrong_answer(answer: str) -> str:
    """A deterministic answer that is surely not `answer`."""
    a = answer.strip()
    option = re.fullmatch(r"\(([A-Za-z])\)", a)
    if option:
        return "(B)" if option.group(1).upper() == "A" else "(A)"
    if re.fullmatch(r"-?\d+", a):
        return str(int(a) + 1)
    if re.fullmatch(r"-?\d*\.\d+", a):
        return format_number(float(a) + 1)
    swapped = _SWAPS.get(a.lower())
    if swapped is not None:
        return swapped.capitalize() if a[:1].isupper() else swapped
    return f"not {a}"


def task_accuracy(full_text: str, *, base_accuracy: float, skill_phrases: dict[str, float]) -> float:
    lowered = full_text.lower()
    bonus = sum(b for phrase, b in skill_phrases.items() if phrase.lower() in lowered)
    return min(1.0, max(0.0, base_accuracy + bonus))


def task_answer(
    user_text: str, full_text: str, *, seed: object, config: FakeLLMConfig, index: AnswerKeyIndex
) -> str:
    """The scripted task model's reply."""
    found = index.find(user_text) or solve_arithmetic(user_text)
    if found is None:
        return "I don't know."
    question, answer = found
    p = task_accuracy(full_text, base_accuracy=config.base_accuracy, skill_phrases=config.skill_phrases)
    given = answer if unit_interval("task", question, seed) < p else wrong_answer(answer)
    return f"Let's think step by step. The answer is {given}."


def _json_reply(schema: Any, value: str, default_field: str) -> str:
    props = schema.get("properties") if isinstance(schema, dict) else None
    name = next(iter(props), default_field) if isinstance(props, dict) and props else default_field
    return json.dumps({name: value}, ensure_ascii=False)


def approx_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def hashed_embedding(text: str, dim: int) -> list[float]:
    """A normalised bag-of-words vector by hashing: similar texts get similar vectors, always the same ones."""
    vec = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        h = stable_hash("embed", word)
        vec[h % dim] += 1.0 if (h >> 32) & 1 else -1.0
    norm = math.sqrt(sum(x * x for x in vec))
    if norm == 0:
        vec[0] = 1.0
        return vec
    return [x / norm for x in vec]


# --- the server ------------------------------------------------------------------------------------


class _Stats:
    def __init__(self) -> None:
        self.requests = 0
        self.completed = 0
        self.in_service = 0
        self.peak_in_service = 0
        self.status: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.roles: Counter[str] = Counter()
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.seen: Counter[str] = Counter()  # arrivals per request fingerprint
        self.answered: Counter[str] = Counter()  # successful replies per fingerprint
        self.embedding_requests = 0
        self.timeline: list[tuple[float, float, str]] = []  # (service start, end, role), monotonic seconds

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "completed": self.completed,
            "in_service": self.in_service,
            "peak_in_service": self.peak_in_service,
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
        }


def _error_body(message: str, *, type_: str, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "code": code, "param": None}}


class FakeLLMServer:
    """The fake endpoint, run in-process: `url = await server.start()`, then `await server.stop()`."""

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self._index = AnswerKeyIndex(self.config.answer_key)
        self._stats = _Stats()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._slots: asyncio.Semaphore | None = None
        self._gate: asyncio.Event | None = None
        self._stopping: asyncio.Event | None = None
        self._changed: asyncio.Condition | None = None
        self._expected_key: str | None = None
        self._log = structlog.get_logger(__name__)

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

    def reset(self) -> None:
        self._stats = _Stats()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if host not in LOOPBACK_HOSTS:
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
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound_port = self._runner.addresses[0][1]
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
        """Like the real API, quote a masked part of the wrong key: clients must not pass this text on."""
        given = request.headers.get("Authorization", "").removeprefix("Bearer ")
        shown = f"{given[:12]}****{given[-4:]}" if len(given) > 16 else "****"
        return _error_body(
            f"Incorrect API key provided: {shown}.", type_="invalid_request_error", code="invalid_api_key"
        )

    async def _embeddings(self, request: web.Request) -> web.Response:
        self._stats.embedding_requests += 1
        if not self._authorized(request):
            return web.json_response(self._bad_key_body(request), status=401)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response(_error_body("body is not JSON", type_="invalid_request_error"), status=400)
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            problem = _error_body("input must be a string or a list of strings", type_="invalid_request_error")
            return web.json_response(problem, status=400)
        dim = int(body.get("dimensions") or self.config.embedding_dim)
        data = [{"object": "embedding", "index": i, "embedding": hashed_embedding(t, dim)} for i, t in enumerate(texts)]
        tokens = sum(approx_tokens(t) for t in texts)
        return web.json_response(
            {"object": "list", "data": data, "model": body.get("model", self.config.model_name),
             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
        )

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        stats = self._stats
        stats.requests += 1
        arrival = stats.requests
        try:
            body = await request.json()
        except ValueError:
            return self._status(400, _error_body("body is not JSON", type_="invalid_request_error"))
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return self._status(400, _error_body("messages must be a non-empty list", type_="invalid_request_error"))
        fingerprint = request_fingerprint(body)
        stats.seen[fingerprint] += 1
        times_seen = stats.seen[fingerprint]
        if not self._authorized(request):
            return self._status(401, self._bad_key_body(request))

        contents = [str(m.get("content") or "") for m in messages]
        full_text = "\n".join(contents)
        markers = _MARKER.findall(full_text)
        fault = self._choose_fault(markers, fingerprint=fingerprint, times_seen=times_seen, arrival=arrival)
        if fault is not None:
            stats.faults[fault] += 1
            response = await self._fault_response(fault)
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
                reply = self._reply(body, full_text, nomarkers=nomarkers)
            finally:
                stats.in_service -= 1
                await self._notify()
        if fault == "empty":
            empty = {"id": f"chatcmpl-{fingerprint[:12]}", "object": "chat.completion", "created": 0, "choices": []}
            return self._ok(empty)
        stats.completed += 1
        stats.answered[fingerprint] += 1
        stats.roles[reply["role"]] += 1
        if self.config.record_timeline:
            stats.timeline.append((served_from, time.monotonic(), reply["role"]))
        stats.prompt_tokens += reply["prompt_tokens"]
        stats.completion_tokens += reply["completion_tokens"]
        return self._ok(
            {
                "id": f"chatcmpl-{fingerprint[:12]}",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model") or self.config.model_name,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply["text"]},
                        "finish_reason": reply["finish_reason"],
                    }
                ],
                "usage": {
                    "prompt_tokens": reply["prompt_tokens"],
                    "completion_tokens": reply["completion_tokens"],
                    "total_tokens": reply["prompt_tokens"] + reply["completion_tokens"],
                },
            }
        )

    def _ok(self, payload: dict[str, Any]) -> web.Response:
        self._stats.status["200"] += 1
        return web.json_response(payload)

    def _status(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
        self._stats.status[str(status)] += 1
        return web.json_response(payload, status=status, headers=headers)

    def _choose_fault(self, markers: list[str], *, fingerprint: str, times_seen: int, arrival: int) -> str | None:
        for marker in markers:
            parts = marker.split(":")
            if len(parts) == 1 and _is_fault_name(parts[0]) and parts[0] != "nomarkers":
                return parts[0]
            if len(parts) == 2 and parts[0] == "once" and _is_fault_name(parts[1]):
                if times_seen == 1:
                    return parts[1]
            elif len(parts) == 3 and parts[0] == "first" and parts[1].isdigit() and _is_fault_name(parts[2]):
                if times_seen <= int(parts[1]):
                    return parts[2]
        remaining = arrival
        for name, n in self.config.fail_first_n.items():
            if remaining <= n:
                return name
            remaining -= n
        for name, rate in self.config.all_fault_rates().items():
            if rate > 0 and unit_interval("fault", name, fingerprint, times_seen) < rate:
                return name
        return None

    async def _fault_response(self, fault: str) -> web.StreamResponse | None:
        """The response for a fault, or None when the fault shapes a normal reply (empty, nomarkers)."""
        if fault == "hang":
            assert self._stopping is not None
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.config.hang_s)
            except TimeoutError:
                pass
            # Counted as a fault only: by now the client has given up, so no status reached it.
            return web.json_response(_error_body("hung request released", type_="server_error"), status=504)
        if fault == "malformed":
            self._stats.status["200"] += 1
            return web.Response(status=200, text="{this is not json", content_type="application/json")
        if fault == "quota":
            return self._status(
                429,
                _error_body("You exceeded your current quota.", type_="insufficient_quota", code="insufficient_quota"),
            )
        if fault in ("empty", "nomarkers"):
            return None
        status = int(fault)
        headers: dict[str, str] = {}
        if status in (429, 503) and self.config.retry_after_s is not None:
            headers["Retry-After"] = f"{self.config.retry_after_s:g}"
            headers["retry-after-ms"] = str(int(round(self.config.retry_after_s * 1000)))
        if status == 401:
            return self._status(
                401, _error_body("Incorrect API key provided.", type_="invalid_request_error", code="invalid_api_key")
            )
        if status == 429:
            problem = _error_body("Rate limit reached; slow down.", type_="requests", code="rate_limit_exceeded")
            return self._status(429, problem, headers)
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return self._status(status, _error_body(f"injected HTTP {status}", type_=kind), headers)

    def _latency(self, fingerprint: str, times_seen: int) -> float:
        latency = self.config.latency_s
        if isinstance(latency, tuple):
            low, high = latency
            return low + (high - low) * unit_interval("latency", fingerprint, times_seen)
        return float(latency)

    def _reply(self, body: dict[str, Any], full_text: str, *, nomarkers: bool) -> dict[str, Any]:
        seed = body.get("seed")
        fmt = body.get("response_format") or {}
        as_json = isinstance(fmt, dict) and fmt.get("type") == "json_schema"
        schema = (fmt.get("json_schema") or {}).get("schema") if as_json else None
        user_text = "\n".join(
            str(m.get("content") or "") for m in body["messages"] if isinstance(m, dict) and m.get("role") == "user"
        )
        current = current_prompt_of(user_text)
        if current is not None:
            role = "optimizer"
            candidate = propose_candidate(current, seed=seed, phrases=self.config.optimizer_phrases)
            if as_json:
                text = _json_reply(schema, candidate, "prompt")
            elif nomarkers:
                text = candidate
            else:
                text = f"<START>{candidate}<END>"
        else:
            role = "task"
            answer = task_answer(user_text, full_text, seed=seed, config=self.config, index=self._index)
            text = _json_reply(schema, answer, "answer") if as_json else answer
        finish_reason = "stop"
        stop = body.get("stop")
        for s in [stop] if isinstance(stop, str) else (stop or []):
            if isinstance(s, str) and s and s in text:
                text = text[: text.index(s)]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0 and approx_tokens(text) > max_tokens:
            text = text[: max_tokens * 4]
            finish_reason = "length"
        return {
            "role": role,
            "text": text,
            "finish_reason": finish_reason,
            "prompt_tokens": approx_tokens(full_text),
            "completion_tokens": approx_tokens(text),
        }


def run_fake_llm(
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    config_path: Path | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the fake endpoint until interrupted (the `gpo-ray fake-llm` command). `on_ready` gets the base URL."""
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
