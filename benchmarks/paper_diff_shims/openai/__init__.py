"""The old openai SDK's surface the official GPO code calls, sent to the harness's fake endpoint."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

from _common import post_chat, settings

from . import error  # noqa: F401  (openai.error.* in the official except clauses)

api_key = ""
PROBE = "Does the sun rise from the north? Just answer yes or no."
_lock = threading.Lock()
_candidate_calls = 0


def _seed_for(body: dict[str, Any]) -> Any:
    """The seed gpo-ray gives the same candidate: the official loop sends n=candidates identical requests per step
    and reads choices[0] of each; the c-th such request is step c // n + 1, index c % n."""
    global _candidate_calls
    s = settings()
    messages = body.get("messages") or []
    if body.get("n") != s["candidates"] or (messages and messages[-1].get("content") == PROBE):
        return None
    from gpo_ray.core.batches import stable_seed

    with _lock:
        c = _candidate_calls
        _candidate_calls += 1
    return stable_seed(s["seed"], s["task"], c // s["candidates"] + 1, c % s["candidates"])


def _obj(x: Any) -> Any:
    if isinstance(x, dict):
        return SimpleNamespace(**{k: _obj(v) for k, v in x.items()})
    if isinstance(x, list):
        return [_obj(v) for v in x]
    return x


class ChatCompletion:
    @staticmethod
    def create(**kwargs: Any) -> Any:
        body = dict(kwargs)
        seed = _seed_for(body)
        if seed is not None:
            body["seed"] = seed
        return _obj(post_chat(settings()["optimizer_base_url"], body))
