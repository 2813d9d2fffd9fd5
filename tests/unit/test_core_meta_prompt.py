"""The meta-prompt the optimizer reads: its parts, their order, and the byte-exact current-prompt block."""

from __future__ import annotations

import dataclasses

import pytest

from gpo_ray.core.extraction import CandidateFilter, extract_candidate
from gpo_ray.core.meta_prompt import (
    CANDIDATE_JSON_SCHEMA,
    DEFAULT_TEMPLATE,
    build_meta_prompt,
)
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

HISTORY = [
    TrajectoryEntry(prompt="Answer the question.", score=0.415, step=0),
    TrajectoryEntry(prompt="Let's think step by step.", score=0.72, step=2),
]
EXAMPLES = [
    Example(input="Is 7 prime?", answers=("Yes",)),
    Example(input="What is 2+2?", answers=("4", "four")),
]


def build(**overrides: object) -> str:
    args: dict[str, object] = dict(
        current_prompt="Let's think step by step.",
        retrieved=HISTORY,
        format_examples=EXAMPLES,
        edit_budget=17,
        placement=PromptPlacement.END,
        structured=False,
    )
    args.update(overrides)
    return build_meta_prompt(**args)  # type: ignore[arg-type]


def test_sections_appear_in_the_papers_order() -> None:
    text = build()
    landmarks = [
        "<PROMPT>",  # (a) the job names the placeholder
        "Answer the question.\nscore: 42/100",  # (b) history, worst first
        "Let's think step by step.\nscore: 72/100",
        "<current_prompt>\nLet's think step by step.\n</current_prompt>",  # (c)
        "Q: Is 7 prime?\n<PROMPT>\nA: Yes",  # (d)
        "Q: What is 2+2?\n<PROMPT>\nA: 4",
        "You may change up to 17 words of the current prompt.",  # (f)
        "Write the new prompt between <START> and <END>.",  # (g)
    ]
    positions = [text.find(mark) for mark in landmarks]
    assert -1 not in positions, [m for m, p in zip(landmarks, positions) if p == -1]
    assert positions == sorted(positions)
    assert "0 to 100" in text  # the scale is stated


def test_current_prompt_block_is_byte_exact_even_for_awkward_prompts() -> None:
    awkward = "Use {braces} and 100% care.\nThen answer: {answer}"
    assert f"<current_prompt>\n{awkward}\n</current_prompt>" in build(current_prompt=awkward)


@pytest.mark.parametrize(
    ("placement", "shape"),
    [
        (PromptPlacement.END, "Q: Is 7 prime?\n<PROMPT>\nA: Yes"),
        (PromptPlacement.BEGINNING, "<PROMPT>\nQ: Is 7 prime?\nA: Yes"),
        (PromptPlacement.SYSTEM, "System: <PROMPT>\nQ: Is 7 prime?\nA: Yes"),
    ],
)
def test_examples_show_where_the_prompt_sits(placement: PromptPlacement, shape: str) -> None:
    assert shape in build(placement=placement)


def test_structured_output_asks_for_json_instead_of_markers() -> None:
    text = build(structured=True)
    assert '{"prompt": "..."}' in text
    assert "<START>" not in text


def test_long_example_inputs_are_clipped() -> None:
    long_input = "word " * 400  # 2000 characters
    text = build(format_examples=[Example(input=long_input, answers=("x",))])
    question = next(line for line in text.splitlines() if line.startswith("Q: "))
    assert question.endswith("...")
    assert len(question) <= len("Q: ") + 600 + len("...")
    assert "...\n<PROMPT>\nA: x" in text


def test_without_history_or_examples_the_sections_are_left_out() -> None:
    text = build(retrieved=[], format_examples=[])
    assert "score:" not in text
    assert "Q:" not in text
    assert "<current_prompt>\nLet's think step by step.\n</current_prompt>" in text


def test_template_sentences_can_be_overridden() -> None:
    template = dataclasses.replace(DEFAULT_TEMPLATE, budget="Change at most {budget} words.")
    assert "Change at most 17 words." in build(template=template)


def test_negative_budget_is_an_error() -> None:
    with pytest.raises(ValueError, match="edit_budget"):
        build(edit_budget=-1)


@pytest.mark.parametrize("structured", [False, True])
def test_an_echoed_meta_prompt_yields_no_new_candidate(structured: bool) -> None:
    """An optimizer that only repeats its instructions must not put a 'new prompt' on the trajectory."""
    candidate, how = extract_candidate(build(structured=structured), structured=structured)
    if candidate is not None:
        tried = [entry.prompt for entry in HISTORY] + ["Let's think step by step."]
        assert not CandidateFilter(tried).admit(candidate), (candidate, how)


def test_candidate_schema() -> None:
    assert CANDIDATE_JSON_SCHEMA == {
        "type": "object",
        "properties": {"prompt": {"type": "string", "minLength": 1}},
        "required": ["prompt"],
        "additionalProperties": False,
    }
