"""How the fake behaves: its scripted models, service (latency, slots), faults and key. Loadable from YAML/JSON."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from gpo_ray.errors import ConfigError
from gpo_ray.testing.faults import NAMED_FAULTS, is_fault_name

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


class FakeLLMConfig(BaseModel):
    """How the fake behaves. Loadable from YAML/JSON (`gpo-ray fake-llm --config F`)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = "fake-llm"
    latency_s: float | tuple[float, float] = Field(default=0.0, description="fixed, or in [a, b] by request hash")
    concurrency: int = Field(default=64, gt=0, description="requests served at once; the rest queue")
    hang_s: float = Field(default=3600.0, gt=0, description="how long [[fault:hang]] and [[fault:stall]] keep a "
                          "request open")
    oversized_bytes: int = Field(default=20_000_000, gt=0, description="the body [[fault:oversized]] sends")
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
    # The scripted judge (requests with purpose judge, or without one those that open with tasks/judge.py's
    # JUDGE_SYSTEM): the top score when the reply
    # holds the reference answer, or any of `judge_phrases`; the bottom one, with the reason, otherwise. "unreadable":
    # a reply with no score in it (the malformed-judge tests).
    judge_phrases: list[str] = []
    judge_replies: Literal["scored", "unreadable"] = "scored"
    embedding_dim: int = Field(default=64, gt=0, le=4096)
    record_timeline: bool = Field(default=False, description="keep (start, end, role) of every served request "
                                  "for GET /timeline (benchmarks: utilization per phase)")
    record_requests: bool = Field(default=False, description="keep (role, text, temperature, max_tokens, the "
                                  "X-GPO-Role and X-GPO-Purpose headers) of every served request, for tests that "
                                  "check what was sent")

    @field_validator("fail_first_n", "fault_rates")
    @classmethod
    def _known_faults(cls, v: dict[str, Any]) -> dict[str, Any]:
        for name, n in v.items():
            if not is_fault_name(name):
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
