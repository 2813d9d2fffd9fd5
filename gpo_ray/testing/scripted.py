"""The scripted models: every role of a GPO run and an embedder, as pure functions of the request.

Which model answers is decided by routing.py: by the request's purpose (gpo-ray sends it as the X-GPO-Purpose
header; in-process it is `ChatRequest.purpose`), by its X-GPO-Role without one, and only for a request with neither
(made by hand) by what its prose looks like. Then:

- a *candidate* request (the optimizer's meta-prompt) gets the current prompt - found in its
  "<current_prompt>\n{prompt}\n</current_prompt>" block, or (the official GPO text, `meta_prompt_style: paper`,
  generation or editing) after "The current prompt is:\n" - with one of `optimizer_phrases` appended:
  "<START>{candidate}<END>" (a JSON object when the request carries a schema). A rival method's candidate request
  (optimizer.method ape | apo | opro, the same purpose) builds on the prompt it holds (routing.py: rival_prompt_of).
  Where no prompt can be found, the phrase alone.
- a *feedback* request (`optimizer.direction: feedback`) gets one of `FEEDBACK_REASONS`, chosen by a hash of the
  request, between <START> and <END>;
- a *summarize* request (`optimizer.momentum.update: summarize`) gets the latest prompt (its <latest_prompt> block or
  the official text's current prompt) with one of `optimizer_phrases` added, or "Still: " and the current problems
  (its <current_problems> block or the official text's);
- a *judge* request (a `kind: judge` metric's) gets the top score when the graded reply holds the reference answer
  (or a `judge_phrases` phrase), else the bottom one with a reason; `judge_replies: unreadable` makes every judge
  reply one with no score (the malformed-judge tests);
- a *task* request (an answer, or the second turn's question) - the model looks the question up in `answer_key`
  (or solves simple arithmetic) and answers correctly with probability base_accuracy + the bonuses of the
  `skill_phrases` present in the request - decided by a hash, so the same request always gets the
  same reply, and a better prompt gets a superset of the right answers.

`ScriptedLLM` implements the project's `LLMClient`, so tests of the loop use it in-process (like DSPy's
`DummyLM`); `FakeLLMServer` serves the very same replies over HTTP.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gpo_ray.llm.protocol import CHARS_PER_TOKEN, ChatRequest, ChatResponse, Usage, approx_tokens
from gpo_ray.testing.arithmetic import format_number, solve_arithmetic
from gpo_ray.testing.config import FakeLLMConfig
from gpo_ray.testing.hashing import stable_hash, unit_interval
from gpo_ray.testing.routing import (
    BY_CONTENT,
    Route,
    between,
    current_prompt_of,
    is_judge_request,
    rival_prompt_of,
    route,
    summarized,
)
from gpo_ray.vocabulary import Purpose

FEEDBACK_REASONS = (
    "The prompt does not ask the model to check its answer before giving it.",
    "The prompt does not say in which form the final answer must be given.",
    "The prompt does not ask the model to work through the question step by step.",
    "The prompt does not warn the model about the tricky details of the question.",
)


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


def judge_answer(request: ChatRequest, *, config: FakeLLMConfig) -> str | None:
    """The scripted judge's reply to a judge request (its purpose judge, or without a purpose its system message
    tasks/judge.py's JUDGE_SYSTEM), or None for any other request."""
    purpose = request.purpose
    if purpose != Purpose.JUDGE and (purpose is not None or not is_judge_request(request)):
        return None
    return grade(request, config=config)


def grade(request: ChatRequest, *, config: FakeLLMConfig) -> str:
    """The scripted judge: top score when the graded reply holds a reference answer or a `judge_phrases` phrase,
    bottom score and why not otherwise; JSON when the request carries a schema. The scale, the references and the
    reply are read from the sections of tasks/judge.py's request (1 to 5 where no scale is found)."""
    from gpo_ray.tasks import judge

    if config.judge_replies == "unreadable":
        return "I would rather not grade this one."
    text = "\n".join(m.content for m in request.messages if m.role == "user")
    scale = re.search(re.escape(judge.ASK_OPENING) + r"(-?\d+) \(worst\) to (-?\d+) \(best\)", text)
    low, high = (int(scale.group(1)), int(scale.group(2))) if scale else (1, 5)
    reply = between(text, judge.REPLY_HEADING, "\n\n" + judge.ASK_OPENING) or ""
    references = between(text, "Reference answer:\n", "\n\n" + judge.REPLY_HEADING)
    references = references or between(text, "Reference answers:\n", "\n\n" + judge.REPLY_HEADING)
    wanted = [r.strip() for r in (references or "").split("\n") if r.strip()]
    lowered = reply.lower()
    if any(re.search(rf"(?<!\w){re.escape(r.lower())}(?!\w)", lowered) for r in wanted):
        score, reason = high, "The reply gives the reference answer."
    elif any(p.lower() in lowered for p in config.judge_phrases):
        score, reason = high, "The reply says what the rubric asks for."
    elif config.judge_phrases:
        score, reason = low, f"The reply does not say {config.judge_phrases[0]!r}."
    else:
        score, reason = low, "The reply does not give the reference answer."
    if request.json_schema is not None:
        return json.dumps({"score": score, "reason": reason})
    return f"Score: {score}\nReason: {reason}"


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


@dataclass(frozen=True)
class ScriptedReply:
    role: str  # "optimizer" | "feedback" | "summarize" | "judge" | "task": which scripted model answered
    text: str
    finish_reason: str
    usage: Usage
    routed_by: str = BY_CONTENT  # what chose the model: "purpose", "role" or "content" (routing.py)


class ScriptedLLM:
    """The scripted optimizer, task model, judge and embedder behind one `LLMClient`.

    In-process it needs no server (unit tests, the benchmark's counterfactuals); `FakeLLMServer` serves the
    same replies over HTTP. `calls` counts the replies `complete` gave, per role.
    """

    def __init__(self, config: FakeLLMConfig | None = None) -> None:
        self.config = config or FakeLLMConfig()
        self._index = AnswerKeyIndex(self.config.answer_key)
        self.calls: Counter[str] = Counter()

    async def complete(self, request: ChatRequest) -> ChatResponse:
        reply = self.reply(request)
        self.calls[reply.role] += 1
        return ChatResponse(reply.text, reply.usage, finish_reason=reply.finish_reason)

    def reply(self, request: ChatRequest, *, markers: bool = True, role: str | None = None) -> ScriptedReply:
        """The reply to a request, from the model routing.py picks by its purpose, else by `role` (the X-GPO-Role
        header), else by its prose; `markers=False` leaves out the <START>/<END> around a candidate (a fault)."""
        return self.answer(request, route(request, role=role), markers=markers)

    def answer(self, request: ChatRequest, routed: Route, *, markers: bool = True) -> ScriptedReply:
        """The reply of the scripted model `routed` names."""
        full_text = "\n".join(m.content for m in request.messages)
        user_text = "\n".join(m.content for m in request.messages if m.role == "user")
        as_json = request.json_schema is not None
        purpose = routed.purpose
        if purpose is Purpose.JUDGE:
            text = grade(request, config=self.config)
        elif purpose in (Purpose.FEEDBACK, Purpose.SUMMARIZE):
            if purpose is Purpose.FEEDBACK:
                answer = FEEDBACK_REASONS[stable_hash("feedback", user_text) % len(FEEDBACK_REASONS)]
            else:
                kind, about = summarized(user_text)
                if kind == "summarize_prompts":
                    answer = propose_candidate(about or "", seed=request.seed, phrases=self.config.optimizer_phrases)
                else:
                    answer = f"Still: {about or ''}"
            text = f"<START>{answer}<END>" if markers else answer
        elif purpose is Purpose.CANDIDATES:
            current = current_prompt_of(user_text) or rival_prompt_of(user_text) or ""
            candidate = propose_candidate(current, seed=request.seed, phrases=self.config.optimizer_phrases)
            if as_json:
                text = _json_reply(request.json_schema, candidate, "prompt")
            elif not markers:
                text = candidate
            else:
                text = f"<START>{candidate}<END>"
        else:  # answer, second_turn
            answer = task_answer(user_text, full_text, seed=request.seed, config=self.config, index=self._index)
            text = _json_reply(request.json_schema, answer, "answer") if as_json else answer
        finish_reason = "stop"
        for s in request.stop or ():
            if isinstance(s, str) and s and s in text:
                text = text[: text.index(s)]
        max_tokens = request.max_tokens
        if isinstance(max_tokens, int) and max_tokens > 0 and approx_tokens(text) > max_tokens:
            text = text[: max_tokens * CHARS_PER_TOKEN]
            finish_reason = "length"
        usage = Usage(approx_tokens(full_text), approx_tokens(text))
        return ScriptedReply(routed.model, text, finish_reason, usage, routed.by)

    def embed(self, texts: Sequence[str], *, dimensions: int | None = None) -> list[list[float]]:
        """Hashed bag-of-words vectors: similar texts are near, without a model to load."""
        dim = dimensions or self.config.embedding_dim
        return [hashed_embedding(t, dim) for t in texts]
