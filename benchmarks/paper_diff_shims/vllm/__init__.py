"""vLLM's surface the official scorer path calls, answered by the harness's fake endpoint over the chat API."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

from _common import post_chat, settings


class SamplingParams:
    def __init__(self, temperature: float = 1.0, max_tokens: int = 16, stop: Any = None, **_: Any) -> None:
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.stop = stop


class _Tokenizer:
    def apply_chat_template(self, conversation: list[dict], add_generation_prompt: bool = True, **_: Any) -> list[int]:
        """The conversation as ids: the UTF-8 bytes of its JSON (decoded back by LLM.generate)."""
        return list(json.dumps(conversation, ensure_ascii=False).encode("utf-8"))


class LLM:
    def __init__(self, model: str = "", **_: Any) -> None:
        self.model = model

    def get_tokenizer(self) -> _Tokenizer:
        return _Tokenizer()

    def generate(self, prompts: Any = None, sampling_params: SamplingParams | None = None,
                 prompt_token_ids: Any = None, **_: Any) -> list[Any]:
        params = sampling_params or SamplingParams()
        if prompt_token_ids is not None:
            conversations = [json.loads(bytes(ids).decode("utf-8")) for ids in prompt_token_ids]
        else:
            conversations = [[{"role": "user", "content": p}] for p in prompts]
        s = settings()

        def one(messages: list[dict]) -> str:
            body: dict[str, Any] = {"model": s["scorer_model"], "messages": messages,
                                    "temperature": params.temperature, "max_tokens": params.max_tokens}
            if s.get("scorer_seed") is not None:
                body["seed"] = s["scorer_seed"]
            if params.stop:
                body["stop"] = params.stop
            return post_chat(s["scorer_base_url"], body)["choices"][0]["message"]["content"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            texts = list(pool.map(one, conversations))
        return [SimpleNamespace(prompt=None, outputs=[SimpleNamespace(text=t)]) for t in texts]
