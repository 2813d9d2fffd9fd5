"""In-process LLM clients for unit tests of the GPO loop (no HTTP): the fake endpoint's scripted models,
called directly, so unit tests and end-to-end tests script the same behaviour."""

from __future__ import annotations

from gpo_ray.llm.fake_server import (
    AnswerKeyIndex,
    FakeLLMConfig,
    answer_key_from_examples,
    approx_tokens,
    current_prompt_of,
    propose_candidate,
    task_answer,
)
from gpo_ray.llm.protocol import ChatRequest, ChatResponse, Usage
from gpo_ray.tasks.registry import resolve_tasks


class ScriptedOptimizer:
    """Appends one of `phrases` to the current prompt, picked by the request's seed."""

    def __init__(self, phrases):
        self.phrases = list(phrases)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        text = request.messages[-1].content
        candidate = propose_candidate(current_prompt_of(text), seed=request.seed, phrases=self.phrases)
        return ChatResponse(f"Here you go.\n<START>{candidate}<END>", Usage(approx_tokens(text), 10))


class ScriptedTaskModel:
    """Answers the bundled example task; accuracy grows with the skill phrases in the prompt."""

    def __init__(self, skills: dict[str, float], *, base: float = 0.2):
        (task,) = resolve_tasks(["example/arithmetic"], data_dir=None)
        key = answer_key_from_examples([*task.train, *task.eval, *task.test])
        self.config = FakeLLMConfig(skill_phrases=skills, base_accuracy=base, answer_key=key)
        self.index = AnswerKeyIndex(key)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        full = "\n".join(m.content for m in request.messages)
        user = "\n".join(m.content for m in request.messages if m.role == "user")
        reply = task_answer(user, full, seed=request.seed, config=self.config, index=self.index)
        return ChatResponse(reply, Usage(approx_tokens(full), approx_tokens(reply)))
