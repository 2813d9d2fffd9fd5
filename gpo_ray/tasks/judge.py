"""The LLM judge of a `kind: judge` metric (config.JudgeMetric): its request, and a tolerant reading of its reply.

Pure apart from `ask_judge`, which sends through the judge role's client (the same build_client stack as the other
roles: cache, retry, limits, accounting as role `judge`), with purpose `judge` (the X-GPO-Purpose header: the fake
endpoint answers by it). The request starts with a fixed system message, JUDGE_SYSTEM, by which a judge request
sent without its purpose is still known (the fake's fallback). The judge answers on the metric's integer scale [low, high]; the score is normalised to [0, 1] and its reason becomes
the metric's feedback. A reply that cannot be read is asked again, a few times (each its own cache entry, so a
rerun replays the same sequence from the cache), then the example is a metric error, and the run goes on.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from gpo_ray.config import JudgeMetric
from gpo_ray.llm.protocol import ChatMessage, ChatRequest, LLMClient
from gpo_ray.tasks.metric_specs import Judgement, MetricError, parse_json_reply
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import Purpose

JUDGE_SYSTEM = ("You are an impartial judge. You grade one reply to one input by the rubric you are given, "
                "on the integer scale you are given, and you say briefly why.")

# Asked for where the judge role uses structured output (LLMRoleConfig.uses_structured_output).
JUDGE_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}

# The request's sections (the fake endpoint reads them back: gpo_ray/testing/scripted.py, grade).
REPLY_HEADING = "Reply to grade:\n"
ASK_OPENING = "Grade the reply by the rubric with an integer score from "

# A reply that cannot be read is asked for this many times in all before the example counts as a metric error.
JUDGE_READ_ATTEMPTS = 3


@dataclass(frozen=True)
class JudgeParams:
    """How the judge is asked: the judge_model role's sampling and whether it gets the JSON schema."""

    temperature: float = 0.0
    max_tokens: int | None = 200
    structured: bool = False


class JudgeUnreadable(ValueError):
    """The judge's reply holds no score on the scale."""


def judge_request(metric: JudgeMetric, example: Example, reply: str, *, params: JudgeParams,
                  attempt: int = 0) -> ChatRequest:
    """The judge's request: rubric, input, reference(s) where there are any, the reply; a score and a reason asked
    for. `attempt` makes a re-ask after an unreadable reply its own cache entry."""
    low, high = metric.scale
    parts = [f"Rubric:\n{metric.rubric.strip()}", f"Input:\n{example.input}"]
    if example.answers:
        label = "Reference answer" if len(example.answers) == 1 else "Reference answers"
        parts.append(f"{label}:\n" + "\n".join(example.answers))
    parts.append(f"{REPLY_HEADING}{reply}")
    if params.structured:
        ask = (f"{ASK_OPENING}{low} (worst) to {high} (best). Answer "
               'with JSON: {"score": <integer>, "reason": "<one or two sentences: what the reply gets wrong, or '
               'why it is good>"}.')
    else:
        ask = (f"{ASK_OPENING}{low} (worst) to {high} (best). Answer "
               "in exactly two lines:\nScore: <integer>\nReason: <one or two sentences: what the reply gets wrong, "
               "or why it is good>")
    parts.append(ask)
    return ChatRequest(
        messages=(ChatMessage("system", JUDGE_SYSTEM), ChatMessage("user", "\n\n".join(parts))),
        temperature=params.temperature,
        max_tokens=params.max_tokens,
        seed=0,
        json_schema=JUDGE_JSON_SCHEMA if params.structured else None,
        sample_index=attempt,
        purpose=Purpose.JUDGE,
    )


_SCORE_LINE = re.compile(r"\bscore\b\**\s*[:=]?\s*\**\s*(-?\d+(?:\.\d+)?)(?:\s*/\s*(\d+))?", re.IGNORECASE)
_REASON_LINE = re.compile(r"\b(?:reason|reasoning|explanation|feedback)\b\**\s*[:=]\s*\**\s*(.+)", re.IGNORECASE | re.DOTALL)
_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:/\s*(\d+))?\s*(?:[\n.,;:-]|$)")


def read_judgement(text: str, *, scale: tuple[int, int]) -> Judgement:
    """A judge's reply as a judgement: JSON `{"score": 4, "reason": ...}` (bare or fenced), or lines `Score: 4` /
    `Reason: ...`, or a reply that starts with the number (`4/5 - ...`). Raises JudgeUnreadable when no score on
    the scale can be read."""
    low, high = scale
    value: Any = None
    reason: str | None = None
    try:
        parsed = parse_json_reply(text)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, dict):
        lowered = {str(k).lower(): v for k, v in parsed.items()}
        value = lowered.get("score", lowered.get("rating", lowered.get("grade")))
        said = next((lowered[k] for k in ("reason", "reasoning", "explanation", "feedback") if k in lowered), None)
        reason = said if isinstance(said, str) else None
        if isinstance(value, str):
            value = value.strip()
    if value is None:
        found = _SCORE_LINE.search(text) or _FRACTION.match(text)
        if found is None:
            raise JudgeUnreadable(f"no score in the judge's reply {_excerpt(text)}")
        if found.group(2) is not None and int(found.group(2)) != high:
            raise JudgeUnreadable(f"the judge scored out of {found.group(2)}, not {high}: {_excerpt(text)}")
        value = found.group(1)
        said = _REASON_LINE.search(text)
        reason = said.group(1) if said else None
    try:
        score = float(value)
    except (TypeError, ValueError):
        raise JudgeUnreadable(f"the judge's score {value!r} is not a number") from None
    if isinstance(value, bool) or math.isnan(score) or not low <= score <= high:
        raise JudgeUnreadable(f"the judge's score {value!r} is outside its scale {low}..{high}")
    reason = " ".join(reason.split()) if reason else None
    return Judgement((score - low) / (high - low), reason or None)


def _excerpt(text: str) -> str:
    one = " ".join(text.split())
    return repr(one if len(one) <= 60 else one[:57] + "...")


async def ask_judge(llm: LLMClient, metric: JudgeMetric, example: Example, reply: str, *,
                    params: JudgeParams) -> Judgement:
    """The judge's verdict on `reply`; raises MetricError when JUDGE_READ_ATTEMPTS replies could not be read (the
    caller counts it as this example's metric error). An LLM error (after the client's own retries) propagates."""
    problem = ""
    for attempt in range(JUDGE_READ_ATTEMPTS):
        answer = await llm.complete(judge_request(metric, example, reply, params=params, attempt=attempt))
        try:
            return read_judgement(answer.text, scale=metric.scale)
        except JudgeUnreadable as e:
            problem = str(e)
    raise MetricError(f"malformed judge reply ({JUDGE_READ_ATTEMPTS} tries): {problem}")

