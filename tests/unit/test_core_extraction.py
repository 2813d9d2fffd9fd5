"""Getting a candidate prompt out of an optimizer reply, and admitting only new, usable ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_ray.core.extraction import CandidateFilter, extract_candidate, normalize_prompt


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  Think   step\n by step.  ", "Think step by step."),
        ('"Think step by step."', "Think step by step."),
        ("`Think step by step.`", "Think step by step."),
        ("```\nThink step by step.\n```", "Think step by step."),
        ("```text\nThink step by step.\n```", "Think step by step."),
        ("\u201cThink step by step.\u201d", "Think step by step."),
        ("Prompt: Think step by step.", "Think step by step."),
        ('New prompt: "Think step by step."', "Think step by step."),
        ("**New Prompt:** Think step by step.", "Think step by step."),
        ('"Yes" or "No"', '"Yes" or "No"'),  # quotes inside are the prompt's own
        ("Answer the prompt: be brief.", "Answer the prompt: be brief."),  # only a LEADING label goes
    ],
)
def test_normalize_prompt(raw: str, expected: str) -> None:
    assert normalize_prompt(raw) == expected


@pytest.mark.parametrize(
    ("reply", "structured", "expected"),
    [
        ('{"prompt": "Think step by step."}', True, ("Think step by step.", "json")),
        ('```json\n{"prompt": "Think step by step."}\n```', True, ("Think step by step.", "json")),
        ('Here you go: {"prompt": "Think step by step."} Good luck!', True, ("Think step by step.", "json")),
        ("not json <START>Think step by step.<END>", True, ("Think step by step.", "markers")),
        ("<START>Think step by step.<END>", False, ("Think step by step.", "markers")),
        ("<start>\nThink step\nby step.\n<end>", False, ("Think step by step.", "markers")),
        (
            "Draft: <START>Be quick.<END> Better: <START>Think step by step.<END>",
            False,
            ("Think step by step.", "markers"),
        ),
        ("Sure!\n<START>Think step by step.", False, ("Think step by step.", "markers")),  # missing <END>
        (
            "Write the new prompt between <START> and <END>.\n<START>Think step by step.<END>",
            False,
            ("Think step by step.", "markers"),
        ),
        ('{"prompt": "Think step by step."}', False, ("Think step by step.", "json")),
        (
            "Sure! Here is an improved prompt:\n\n## Prompt\n"
            "Think step by step and check the answer.\n\nThis helps because...",
            False,
            ("Think step by step and check the answer.", "fallback"),
        ),
        ("score: 80/100\nRead carefully, then answer.", False, ("Read carefully, then answer.", "fallback")),
    ],
)
def test_extract_candidate(reply: str, structured: bool, expected: tuple[str, str]) -> None:
    assert extract_candidate(reply, structured=structured) == expected


@pytest.mark.parametrize(
    ("reply", "structured", "how"),
    [
        ('{"prompt": ""}', True, "rejected:empty"),
        ("<START>   <END>", False, "rejected:empty"),
        ("<START>!!! 123 ???<END>", False, "rejected:no_letters"),
        ("<START>" + "word " * 301 + "<END>", False, "rejected:too_long"),
        ("<START>Think " + "a" * 20_000 + "<END>", False, "rejected:too_long"),  # two words, 20,000 characters
        ('{"prompt": "Think ' + "b" * 5_000 + '"}', True, "rejected:too_long"),
        ("<START>Q: {input} <PROMPT><END>", False, "rejected:scaffolding"),
        ("<START><current_prompt>Think.</current_prompt><END>", False, "rejected:scaffolding"),
        ('{"prompt": "Think <END> now"}', True, "rejected:scaffolding"),
        ("", False, "rejected:no_candidate"),
        ("OK.\n\n---\nHere:", False, "rejected:no_candidate"),
        ("word " * 250, False, "rejected:no_candidate"),  # fallback takes at most 200 words
    ],
)
def test_extract_candidate_rejects(reply: str, structured: bool, how: str) -> None:
    assert extract_candidate(reply, structured=structured) == (None, how)


pieces = st.sampled_from(
    ["<START>", "<END>", "<PROMPT>", "<current_prompt>", "{", "}", '"prompt": ', '"', "```", "\n", " "]
    + ["Prompt:", "Sure!"]
)
replies = st.one_of(
    st.text(max_size=300),
    st.lists(st.one_of(pieces, st.text(min_size=1, max_size=12)), max_size=30).map("".join),
)


@given(replies, st.booleans())
def test_extract_never_crashes_and_never_returns_scaffolding(reply: str, structured: bool) -> None:
    candidate, how = extract_candidate(reply, structured=structured)
    if candidate is None:
        assert how.startswith("rejected:")
    else:
        assert how in {"json", "markers", "fallback"}
        assert candidate == normalize_prompt(candidate)
        assert any(c.isalpha() for c in candidate)
        for token in ("<PROMPT>", "<current_prompt>", "<START>", "<END>"):
            assert token.lower() not in candidate.lower()


def test_filter_admits_each_prompt_once_ignoring_case_and_whitespace() -> None:
    f = CandidateFilter(["Let's think step by step."])
    assert not f.admit("let's  THINK step by step.")  # already tried
    assert f.admit("Think carefully.")
    assert not f.admit("think carefully.")  # already admitted this step
    assert f.admit("Think carefully, then answer.")
    assert not f.admit("   ")
    f.reject("rejected:too_long")
    assert f.counts == {"admitted": 2, "duplicate": 2, "rejected:empty": 1, "rejected:too_long": 1}


def test_filter_counts_are_a_snapshot() -> None:
    f = CandidateFilter([])
    snapshot = f.counts
    f.admit("Think carefully.")
    assert snapshot["admitted"] == 0
    assert f.counts["admitted"] == 1


@pytest.mark.parametrize(
    "reply",
    # Real SmolLM2-135M replies to the meta-prompt: template holes and half-written JSON, not prompts.
    [',<new prompt>', '{ "prompt" : ",.+56,012345}', "{new prompt} {score}", "[your new prompt here]", "12 + 5 = 17 !!"],
)
def test_weak_model_echoes_of_the_template_are_rejected(reply):
    candidate, how = extract_candidate(reply, structured=True)
    assert candidate is None and how.startswith("rejected:")


def test_a_prompt_that_mentions_json_is_still_a_prompt():
    candidate, _ = extract_candidate('Solve it; answer in JSON like {"answer": 3}.', structured=False)
    assert candidate == 'Solve it; answer in JSON like {"answer": 3}.'
