"""In-process deterministic LLM clients for unit tests of the GPO loop (no HTTP)."""

from __future__ import annotations

import hashlib
import re

from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage

CURRENT = re.compile(r"<current_prompt>\n(.*?)\n</current_prompt>", re.S)


def _h(*parts) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


class ScriptedOptimizer:
    """Appends one of `phrases` to the current prompt, picked by the request's seed."""

    def __init__(self, phrases):
        self.phrases = list(phrases)
        self.calls = 0

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.calls += 1
        text = request.messages[-1].content
        current = CURRENT.search(text).group(1)
        start = _h(current, request.seed) % len(self.phrases)
        for i in range(len(self.phrases)):
            phrase = self.phrases[(start + i) % len(self.phrases)]
            if phrase not in current:
                return ChatResponse(f"Here you go.\n<START>{current} {phrase}<END>", Usage(len(text) // 4, 10))
        return ChatResponse("<START>" + current + "<END>", Usage(len(text) // 4, 10))


class ScriptedTaskModel:
    """Answers arithmetic word problems; accuracy grows with the skill phrases in the prompt."""

    def __init__(self, skills: dict[str, float], *, base: float = 0.2):
        self.skills = skills
        self.base = base
        self.seen: dict[str, int] = {}

    async def complete(self, request: ChatRequest) -> ChatResponse:
        text = "\n".join(m.content for m in request.messages)
        self.seen[text] = self.seen.get(text, 0) + 1
        p = min(1.0, self.base + sum(v for k, v in self.skills.items() if k in text))
        nums = [int(n) for n in re.findall(r"\d+", text.split("\n")[0])]
        words = text.lower()
        if "each" in words:
            answer = nums[0] * nums[1]
        elif any(w in words for w in ("gives", "eats", "loses", "sells", "away", "uses")):
            answer = nums[0] - nums[1]
        else:
            answer = nums[0] + nums[1]
        q = text.split("\n")[0]
        correct = (_h(q) % 1000) / 1000 < p
        return ChatResponse(f"The answer is {answer if correct else answer + 1}.", Usage(len(text) // 4, 6))
