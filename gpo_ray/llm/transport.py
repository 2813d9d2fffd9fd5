"""The bottom layer: one HTTP request to an OpenAI-compatible endpoint, failures mapped to typed errors.

Two transports with one behaviour (the same tests run against both):
- `HTTPTransport` (default): one aiohttp POST per request. About a tenth of the openai SDK's CPU per
  call (benchmarks/README.md): at hundreds of calls per second the SDK's request transformation and
  httpx connection-pool bookkeeping, not the network, were what limited a 2-core machine.
- `OpenAITransport`: the openai SDK, for endpoints whose quirks only the SDK knows (`transport: openai`).
Neither retries on its own (the SDK's `max_retries=0`): the retry layer above owns retrying, so that
every attempt is visible to the limits and accounting layers. Error messages name the endpoint and
model and never the key; the server's own error text is shortened and scrubbed of anything key-like.

Both read a reply body as it arrives, with one rule for a body that goes silent (`_read_chunks`): `read_timeout_s`
before its first bytes, the endpoint's learnt idle limit once they came (llm/read_pace.py); either cut is `stalled`.

Both send, as HTTP headers beside the body, the transport's role (X-GPO-Role) and the request's purpose
(X-GPO-Purpose), each when known (llm/protocol.py: metadata_headers): the fake endpoint answers by them, real ones
ignore them. The body is the same with or without them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from gpo_ray.config import LLMRoleConfig
from gpo_ray.llm.errors import (
    FatalLLMError,
    LLMError,
    MalformedResponse,
    OversizedResponse,
    RateLimited,
    RetryableLLMError,
    StalledResponse,
)
from gpo_ray.llm.protocol import (
    ChatRequest,
    ChatResponse,
    Usage,
    metadata_headers,
    tokens_in_chars,
)
from gpo_ray.llm.read_pace import ReadPace
from gpo_ray.loopback import url_is_loopback

NO_KEY = "not-needed"  # local servers (llama.cpp, vLLM) accept any key; the SDK insists on one
_KEYLIKE = re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{4,}|\bBearer\s+\S+", re.IGNORECASE)
_MAX_SERVER_TEXT = 200
# The most a reply body may hold per token of max_tokens, and beyond the completion (ids, usage, JSON around it):
# generous enough for long tokens escaped as \uXXXX, far below what a runaway or hostile endpoint sends.
REPLY_BYTES_PER_TOKEN = 64
REPLY_OVERHEAD_BYTES = 16_384
DEFAULT_MAX_REPLY_BYTES = LLMRoleConfig.model_fields["max_reply_bytes"].default
DEFAULT_READ_TIMEOUT_S = LLMRoleConfig.model_fields["read_timeout_s"].default
DEFAULT_IDLE_READ_TIMEOUT_S = LLMRoleConfig.model_fields["idle_read_timeout_s"].default


class MissingAPIKey(FatalLLMError):
    """`api_key_env` names a variable that is not set. The message names the variable, never a value."""


def read_api_key(api_key_env: str | None) -> str:
    """The key from the named environment variable, or a dummy for keyless local servers."""
    if api_key_env is None:
        return NO_KEY
    value = os.environ.get(api_key_env)
    if not value:
        raise MissingAPIKey(f"the environment variable {api_key_env} (named by api_key_env) is not set or empty")
    return value


class _ChatTransport:
    """What both transports share: the request body and headers, reply parsing, HTTP status -> typed error, scrubbing.

    `role` (a vocabulary.Role value: whose stack this is) goes out as X-GPO-Role on every request. The HTTP client
    is created on first use, inside whatever event loop (e.g. a Ray actor's) calls it.
    Pickling drops the key and the client; an unpickled copy reads the key from its own environment.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str | None = None,
        timeout_s: float = 60.0,
        structured_output: bool = False,
        schema_style: str = "json_schema",
        read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S,
        idle_read_timeout_s: float | None = DEFAULT_IDLE_READ_TIMEOUT_S,
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
        role: str | None = None,
    ) -> None:
        metadata_headers(role=role, purpose=None)  # a role outside the vocabulary fails here, not on the first call
        self.endpoint = base_url
        self.role = role
        self.model = model
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.read_timeout_s = read_timeout_s  # body silent once its headers came; None: total only
        # A body that has begun and then gone silent is cut sooner, at its endpoint's own pace (llm/read_pace.py).
        self.read_pace = ReadPace(floor_s=idle_read_timeout_s, ceiling_s=read_timeout_s)
        self.max_reply_bytes = max_reply_bytes
        self.structured_output = structured_output
        self.schema_style = schema_style  # "json_schema" (OpenAI, vLLM) | "json_object_schema" (llama-cpp-python)
        self._api_key = read_api_key(api_key_env)
        self._client: Any = None

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(endpoint={self.endpoint!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r})")

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_api_key"] = None
        state["_client"] = None
        state.pop("_client_loop", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._api_key = read_api_key(self.api_key_env)

    def request_params(self, request: ChatRequest) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create` (no key, no URL)."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [m.as_dict() for m in request.messages],
            "temperature": request.temperature,
        }
        if request.max_tokens is not None:
            params["max_tokens"] = request.max_tokens
        if request.seed is not None:
            params["seed"] = request.seed
        if request.stop:
            params["stop"] = list(request.stop)
        if request.json_schema is not None and self.structured_output:
            if self.schema_style == "json_object_schema":
                # llama-cpp-python's server enforces a schema given this way and rejects "json_schema" with a 500.
                params["response_format"] = {"type": "json_object", "schema": request.json_schema}
            else:
                params["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "candidate", "schema": request.json_schema, "strict": True},
                }
        return params

    def request_headers(self, request: ChatRequest) -> dict[str, str]:
        """The metadata headers of a request: X-GPO-Role and X-GPO-Purpose, each when known (no key: the session or
        the SDK adds Authorization on its own)."""
        return metadata_headers(role=self.role, purpose=request.purpose)

    def reply_limit(self, request: ChatRequest) -> int:
        """The largest reply body this request can legitimately get: from its max_tokens, at most the cap."""
        if request.max_tokens is None:
            return self.max_reply_bytes
        return min(self.max_reply_bytes, REPLY_OVERHEAD_BYTES + request.max_tokens * REPLY_BYTES_PER_TOKEN)

    def _oversized(self, size: str, request: ChatRequest) -> LLMError:
        asked = f"max_tokens {request.max_tokens}" if request.max_tokens is not None else "no max_tokens"
        return self._error(OversizedResponse, f"reply of {size} bytes exceeds the {self.reply_limit(request):,} "
                           f"bytes a request with {asked} can get (max_reply_bytes caps it)", kind="oversized")

    async def _read_chunks(self, next_chunk: Callable[[], Awaitable[bytes]], content_length: int | str | None,
                           request: ChatRequest) -> bytes:
        """A reply body, read until it ends (an empty chunk), goes silent (stalled: for `read_timeout_s` before its
        first bytes, for the idle limit of llm/read_pace.py once they came), or outgrows the request's limit
        (oversized: the rest is never read, the connection is dropped)."""
        limit = self.reply_limit(request)
        if content_length is not None and str(content_length).isdigit() and int(content_length) > limit:
            raise self._oversized(f"{int(content_length):,}", request)
        chunks: list[bytes] = []
        size = 0
        last_bytes_at: float | None = None  # None until the body has begun
        longest_gap = 0.0
        while True:
            wait = self.read_timeout_s if last_bytes_at is None else self.read_pace.idle_limit(longest_gap)
            try:
                chunk = await asyncio.wait_for(next_chunk(), wait)
            except (asyncio.TimeoutError, TimeoutError):
                if wait is None:
                    raise
                if last_bytes_at is not None:
                    self.read_pace.body_cut()
                raise self._error(StalledResponse, f"the reply stopped arriving for {wait:.3g}s after {size:,} bytes",
                                  kind="stalled") from None
            now = time.monotonic()
            if last_bytes_at is not None:
                longest_gap = max(longest_gap, now - last_bytes_at)
            last_bytes_at = now
            if not chunk:
                if size:
                    self.read_pace.body_read(longest_gap)
                return b"".join(chunks)
            size += len(chunk)
            if size > limit:
                raise self._oversized(f"more than {limit:,}", request)
            chunks.append(chunk)

    def _parse(self, completion: Any, request: ChatRequest) -> ChatResponse:
        if isinstance(completion, str | bytes):  # the SDK hands back raw text for a non-JSON content type
            raise self._error(MalformedResponse, "response body is not JSON", kind="malformed")
        choices = getattr(completion, "choices", None)
        if not choices:
            raise self._error(MalformedResponse, "response has no choices", kind="malformed")
        message = getattr(choices[0], "message", None)
        text = getattr(message, "content", None)
        if not isinstance(text, str):
            raise self._error(MalformedResponse, "response has no message content", kind="malformed")
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        if not isinstance(prompt_tokens, int) or not isinstance(completion_tokens, int):
            # Some servers omit usage; a deterministic estimate keeps token budgets meaningful.
            prompt_tokens = tokens_in_chars(request.prompt_chars)
            completion_tokens = tokens_in_chars(len(text))
        return ChatResponse(
            text=text,
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens),
            finish_reason=getattr(choices[0], "finish_reason", None),
        )

    def _status_error(self, status: int, headers: Any, body: Any) -> LLMError:
        """`body`: the server's error object (the `error` member of an OpenAI error body), or None."""
        detail = self._server_text(body)
        if status == 429:
            if _error_code(body) == "insufficient_quota":
                return self._error(FatalLLMError, f"HTTP 429 insufficient quota{detail}", kind="quota")
            return self._error(
                RateLimited,
                f"HTTP 429 rate limited{detail}",
                kind="rate_limited",
                retry_after=retry_after_s(headers),
            )
        if status == 408:
            return self._error(RetryableLLMError, f"HTTP 408 request timeout{detail}", kind="timeout")
        if status == 409:
            return self._error(RetryableLLMError, f"HTTP 409 conflict{detail}", kind="conflict")
        if status >= 500:
            return self._error(
                RetryableLLMError,
                f"HTTP {status} server error{detail}",
                kind="server_error",
                retry_after=retry_after_s(headers),
            )
        if status in (401, 403):
            # The server's text may quote part of the key; say only where to look.
            hint = (
                f"; check the variable {self.api_key_env}"
                if self.api_key_env
                else "; the endpoint wants an API key (set api_key_env)"
            )
            return self._error(FatalLLMError, f"HTTP {status} authentication failed{hint}", kind="auth")
        if status == 404:
            return self._error(
                FatalLLMError, f"HTTP 404 not found (wrong base_url or model?){detail}", kind="not_found"
            )
        return self._error(FatalLLMError, f"HTTP {status} request rejected{detail}", kind="bad_request")

    def _server_text(self, body: Any) -> str:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, str) or not message.strip():
            return ""
        return f": {self.scrub(message.strip())[:_MAX_SERVER_TEXT]}"

    def scrub(self, text: str) -> str:
        """Remove the key and anything key-shaped from text that came from the server."""
        if self._api_key and self._api_key != NO_KEY:
            text = text.replace(self._api_key, "***")
        return _KEYLIKE.sub("***", text)

    def _error(
        self, cls: type[LLMError], message: str, *, kind: str, retry_after: float | None = None
    ) -> LLMError:
        err = cls(message, endpoint=self.endpoint, model=self.model, retry_after=retry_after)
        err.kind = kind  # type: ignore[attr-defined]  # read by accounting.error_kind
        return err

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


class OpenAITransport(_ChatTransport):
    """Sends one ChatRequest with the openai SDK."""

    def _sdk(self) -> Any:
        import openai  # imported on first use: it costs a third of a second in every worker that never uses it

        if self._client is None:
            http_client = None
            if url_is_loopback(self.endpoint):
                # A proxy from the environment must not capture requests to a server on this machine.
                http_client = openai.DefaultAsyncHttpxClient(trust_env=False, timeout=self.timeout_s)
            self._client = openai.AsyncOpenAI(
                base_url=self.endpoint, api_key=self._api_key, max_retries=0, timeout=self.timeout_s,
                http_client=http_client,
            )
        return self._client

    async def complete(self, request: ChatRequest) -> ChatResponse:
        """The body is read as it arrives, as HTTPTransport reads it: cut when it stalls for `read_timeout_s` after
        the headers, refused (the rest unread) when it outgrows the request's limit."""
        import httpx
        import openai

        create = self._sdk().chat.completions.with_streaming_response.create
        try:
            headers = self.request_headers(request)
            async with create(**self.request_params(request), **({"extra_headers": headers} if headers else {})) as reply:
                http = reply.http_response
                chunks = http.aiter_bytes()
                raw = await self._read_chunks(lambda: anext(chunks, b""), http.headers.get("content-length"), request)
        except openai.APIStatusError as e:
            raise self._status_error(e.status_code, e.response.headers, e.body) from None
        except (openai.APITimeoutError, httpx.TimeoutException):
            raise self._error(RetryableLLMError, f"no response within {self.timeout_s:g}s", kind="timeout") from None
        except openai.APIConnectionError as e:
            raise self._error(RetryableLLMError, f"connection failed ({_cause_name(e)})", kind="connection") from None
        except httpx.TransportError as e:
            raise self._error(RetryableLLMError, f"connection failed ({type(e).__name__})", kind="connection") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise self._error(MalformedResponse, "response body is not JSON", kind="malformed") from None
        if not isinstance(body, dict):
            raise self._error(MalformedResponse, "response body is not JSON", kind="malformed")
        return self._parse(_Completion(body), request)


class HTTPTransport(_ChatTransport):
    """Sends one ChatRequest as one aiohttp POST to `{base_url}/chat/completions`."""

    _client_loop: asyncio.AbstractEventLoop | None = None

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.closed or self._client_loop is not loop:
            self._client_loop = loop  # a session belongs to the loop it was made in (asyncio.run twice: two loops)
            # No connection cap here: the limits layer above bounds requests in flight. A proxy from the
            # environment must not capture requests to a server on this machine.
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0),
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                trust_env=not url_is_loopback(self.endpoint),
                headers={"Authorization": f"Bearer {self._api_key}"},
            )
        return self._client

    async def complete(self, request: ChatRequest) -> ChatResponse:
        url = self.endpoint.rstrip("/") + "/chat/completions"
        try:
            post = self._session().post(url, json=self.request_params(request), headers=self.request_headers(request))
            async with post as reply:
                raw = await self._read_body(reply, request)
                status, headers = reply.status, reply.headers
        except (asyncio.TimeoutError, TimeoutError):
            raise self._error(RetryableLLMError, f"no response within {self.timeout_s:g}s", kind="timeout") from None
        except aiohttp.ClientError as e:
            raise self._error(RetryableLLMError, f"connection failed ({type(e).__name__})", kind="connection") from None
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            body = None
        if status >= 400:
            error = body.get("error", body) if isinstance(body, dict) else None
            raise self._status_error(status, headers, error if isinstance(error, dict) else None)
        if not isinstance(body, dict):
            raise self._error(MalformedResponse, "response body is not JSON", kind="malformed")
        return self._parse(_Completion(body), request)


    async def _read_body(self, reply: aiohttp.ClientResponse, request: ChatRequest) -> bytes:
        return await self._read_chunks(reply.content.readany, reply.content_length, request)


class _Completion:
    """Attribute access over a chat-completion JSON body, so one `_parse` serves both transports."""

    def __init__(self, data: Any) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        value = self._data.get(name) if isinstance(self._data, dict) else None
        if isinstance(value, dict):
            return _Completion(value)
        if isinstance(value, list):
            return [_Completion(v) if isinstance(v, dict) else v for v in value]
        return value


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait, from `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None if unreadable."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _error_code(body: Any) -> str | None:
    if isinstance(body, dict):
        code = body.get("code") or body.get("type")
        return str(code) if code else None
    return None


def _cause_name(e: BaseException) -> str:
    cause = e.__cause__ or e.__context__
    return type(cause).__name__ if cause is not None else type(e).__name__
