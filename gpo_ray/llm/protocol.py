"""The async chat-client protocol every layer implements (transport, retry, limits, cache, accounting)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from gpo_ray.vocabulary import Purpose, Role

# About four characters per token (English text): the one estimate used wherever tokens are counted without a reply.
CHARS_PER_TOKEN = 4


def tokens_in_chars(chars: float, *, nearest: bool = False) -> int:
    """Estimated tokens in `chars` characters of text, rounded down, or to the nearest with `nearest`."""
    return int(chars / CHARS_PER_TOKEN + 0.5) if nearest else int(chars // CHARS_PER_TOKEN)


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


# Metadata sent beside a request, as HTTP headers (the transport sets them): who asks (a vocabulary.Role value) and
# what for (a vocabulary.Purpose value). Not part of the body, so the bodies sent are the same with or without them,
# and never part of the cache key. The fake endpoint (gpo_ray/testing/routing.py) answers by them; real endpoints
# ignore headers they do not know. They carry vocabulary words only, never a key.
ROLE_HEADER = "X-GPO-Role"
PURPOSE_HEADER = "X-GPO-Purpose"
ROLES = frozenset(r.value for r in Role)
PURPOSES = frozenset(p.value for p in Purpose)


def metadata_headers(*, role: str | None, purpose: str | None) -> dict[str, str]:
    """The X-GPO-Role and X-GPO-Purpose headers for a request, each only when known. Raises ValueError on a value
    outside the vocabulary, so that nothing but a role's or a purpose's name can ride along."""
    headers: dict[str, str] = {}
    if role is not None:
        if role not in ROLES:
            raise ValueError(f"unknown LLM role {role!r}: one of {sorted(ROLES)}")
        headers[ROLE_HEADER] = str(role)
    if purpose is not None:
        if purpose not in PURPOSES:
            raise ValueError(f"unknown request purpose {purpose!r}: one of {sorted(PURPOSES)}")
        headers[PURPOSE_HEADER] = str(purpose)
    return headers


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request.

    `sample_index` distinguishes several samples of the same request at temperature > 0, so that
    each is its own cache entry; it is not sent to the endpoint.

    `purpose` (a vocabulary.Purpose value, or None) says what the request is for; it travels as the X-GPO-Purpose
    header, outside the body, and is not part of the cache key: the same request asked for another purpose is the
    same cache entry.
    """

    messages: tuple[ChatMessage, ...]
    temperature: float = 0.0
    max_tokens: int | None = None
    seed: int | None = None
    json_schema: dict[str, Any] | None = None
    sample_index: int = 0
    stop: tuple[str, ...] | None = None
    purpose: str | None = None

    def __post_init__(self) -> None:
        if self.purpose is not None and self.purpose not in PURPOSES:
            raise ValueError(f"unknown request purpose {self.purpose!r}: one of {sorted(PURPOSES)}")

    @property
    def prompt_chars(self) -> int:
        return sum(len(m.content) for m in self.messages)

    def cache_key(self, model: str) -> str:
        """Stable key over model, messages, parameters and sample index (never key, URL or purpose)."""
        payload = {
            "model": model,
            "messages": [m.as_dict() for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "json_schema": self.json_schema,
            "sample_index": self.sample_index,
            "stop": list(self.stop) if self.stop else None,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class ChatResponse:
    text: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    cached: bool = False


@runtime_checkable
class LLMClient(Protocol):
    """Anything that answers a ChatRequest. Layers wrap one another and all satisfy this."""

    async def complete(self, request: ChatRequest) -> ChatResponse: ...


def approx_tokens(text: str) -> int:
    """The estimate for a text as usage to report, at least one token (the fake endpoint reports it)."""
    return max(1, tokens_in_chars(len(text)))


def user_message(text: str) -> tuple[ChatMessage, ...]:
    return (ChatMessage("user", text),)
