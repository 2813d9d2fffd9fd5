"""The `paper` meta-prompt equals the official GPO code's text for the same states.

The fixture tests/unit/fixtures/paper_meta_prompt_official.json was written by running the official rendering
(RUCAIBox/GPO at 765df20: Generate_Without_Gradient.gen_util_gradient_text, the k-list "para" selection methods and
K_Update, W_LR.use_learning_rate) unmodified on these states, with pandas/torch stubbed and the sentence embedder
returning the fixed `vectors` of each case (see the file's "source"); only the resulting strings are committed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.core import paper_text
from gpo_ray.core.paper_meta_prompt import (
    SCORE_PLACEHOLDER,
    build_paper_meta_prompt,
    format_official_score,
)
from gpo_ray.core.retrieval import retrieve
from gpo_ray.core.types import TrajectoryEntry
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "paper_meta_prompt_official.json").read_text("utf-8"))
EXAMPLES = [Example(input=e["input"], answers=(e["answer"],)) for e in FIXTURE["examples"]]
STRATEGY = {"relavance": "relevance", "recency": "recency", "importance": "importance"}


def _render(case: dict) -> str:
    examples = [EXAMPLES[i] for i in case["format_indices"]]
    if not case["history"]:
        return build_paper_meta_prompt(
            current_prompt=case["current_prompt"], retrieved=[], format_examples=examples,
            edit_budget=case["budget"], placement=PromptPlacement(case["placement"]),
            current_score=case["current_score"],
        )
    trajectory = [TrajectoryEntry(p, s, i) for i, (p, s) in enumerate(case["history"])]
    retrieved = retrieve(
        trajectory, strategy=STRATEGY[case["strategy"]], k=case["k"], vectors=case["vectors"], order="as_selected"
    )
    return build_paper_meta_prompt(
        current_prompt=trajectory[-1].prompt, retrieved=retrieved, format_examples=examples,
        edit_budget=case["budget"], placement=PromptPlacement(case["placement"]),
    )


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_matches_official_text_byte_for_byte(case: dict) -> None:
    assert _render(case) == case["expected"]


def test_fixture_covers_each_method_and_placement() -> None:
    names = {c["name"] for c in FIXTURE["cases"]}
    assert {c["strategy"] for c in FIXTURE["cases"] if c["history"]} == set(STRATEGY)
    assert {c["placement"] for c in FIXTURE["cases"]} == {"end", "beginning"}
    assert any(not c["history"] for c in FIXTURE["cases"]) and any(n.startswith("step1") for n in names)


def test_scores_print_as_the_official_code_prints_them() -> None:
    assert format_official_score(0.4791666666666667) == "0.4791666666666667"
    assert format_official_score(1.0) == "1.0"
    assert format_official_score(0) == "0.0"
    assert format_official_score(SCORE_PLACEHOLDER) == SCORE_PLACEHOLDER


def test_system_placement_has_no_official_form() -> None:
    with pytest.raises(ValueError, match="no 'system' placement"):
        build_paper_meta_prompt(current_prompt="p", retrieved=[TrajectoryEntry("p", 0.5, 0)], format_examples=[],
                                edit_budget=5, placement=PromptPlacement.SYSTEM)


def test_budget_line_sits_before_the_last_line() -> None:
    text = build_paper_meta_prompt(current_prompt="p", retrieved=[TrajectoryEntry("p", 0.5, 0)],
                                   format_examples=EXAMPLES[:1], edit_budget=7, placement=PromptPlacement.END)
    assert text.endswith("\n" + paper_text.BUDGET.format(budget=7) + "\n" + paper_text.OUTPUT)


def test_default_order_is_unchanged_and_as_selected_keeps_selection_order() -> None:
    traj = [TrajectoryEntry("a", 0.2, 0), TrajectoryEntry("b", 0.9, 1), TrajectoryEntry("c", 0.5, 2)]
    assert [e.prompt for e in retrieve(traj, strategy="recency", k=3)] == ["a", "c", "b"]
    assert [e.prompt for e in retrieve(traj, strategy="recency", k=3, order="as_selected")] == ["c", "b", "a"]
    assert [e.prompt for e in retrieve(traj, strategy="importance", k=2, order="as_selected")] == ["b", "c"]
    with pytest.raises(ValueError, match="order"):
        retrieve(traj, strategy="recency", k=3, order="newest")
