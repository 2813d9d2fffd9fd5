"""Where the prompt goes relative to the question."""

from __future__ import annotations

import pytest

from gpo_ray.llm.protocol import ChatMessage
from gpo_ray.tasks.placement import build_task_messages
from gpo_ray.vocabulary import PromptPlacement

QUESTION = "Tom has 3 apples and buys 4 more. How many apples does he have?"
PROMPT = "Let's think step by step."


def test_end_puts_the_prompt_after_the_question() -> None:
    assert build_task_messages(PROMPT, QUESTION, placement=PromptPlacement.END) == (
        ChatMessage("user", f"{QUESTION}\n{PROMPT}"),
    )


def test_beginning_puts_the_prompt_before_the_question() -> None:
    assert build_task_messages(PROMPT, QUESTION, placement=PromptPlacement.BEGINNING) == (
        ChatMessage("user", f"{PROMPT}\n{QUESTION}"),
    )


def test_system_puts_the_prompt_in_a_system_message() -> None:
    assert build_task_messages(PROMPT, QUESTION, placement=PromptPlacement.SYSTEM) == (
        ChatMessage("system", PROMPT),
        ChatMessage("user", QUESTION),
    )


@pytest.mark.parametrize("placement", list(PromptPlacement))
@pytest.mark.parametrize("prompt", ["", "  \n"])
def test_empty_prompt_is_just_the_question(placement: PromptPlacement, prompt: str) -> None:
    assert build_task_messages(prompt, QUESTION, placement=placement) == (ChatMessage("user", QUESTION),)


def test_plain_placement_values_are_accepted() -> None:
    [message] = build_task_messages(PROMPT, QUESTION, placement="beginning")  # type: ignore[arg-type]
    assert message.content == f"{PROMPT}\n{QUESTION}"
    with pytest.raises(ValueError):
        build_task_messages(PROMPT, QUESTION, placement="middle")  # type: ignore[arg-type]
