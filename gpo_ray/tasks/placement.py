"""Where the optimized prompt goes relative to the task question.

The paper puts the prompt after the question (like "Let's think step by step"); placing it
before the question or in the system message are the common alternatives, and the best prompt
differs with placement, so it is a run setting.
"""

from __future__ import annotations

from gpo_ray.llm.protocol import ChatMessage
from gpo_ray.vocabulary import PromptPlacement


def build_task_messages(prompt: str, question: str, *, placement: PromptPlacement) -> tuple[ChatMessage, ...]:
    """The chat messages that ask the task model one question under one prompt.

    An empty (or blank) prompt yields just the question, so the empty-prompt baseline is
    the bare question under every placement.
    """
    placement = PromptPlacement(placement)  # also accepts the plain value, e.g. "end"
    if not prompt.strip():
        return (ChatMessage("user", question),)
    if placement is PromptPlacement.END:
        return (ChatMessage("user", f"{question}\n{prompt}"),)
    if placement is PromptPlacement.BEGINNING:
        return (ChatMessage("user", f"{prompt}\n{question}"),)
    if placement is PromptPlacement.SYSTEM:
        return (ChatMessage("system", prompt), ChatMessage("user", question))
    raise ValueError(f"unknown prompt placement: {placement!r}")
