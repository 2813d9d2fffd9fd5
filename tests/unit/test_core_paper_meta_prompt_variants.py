"""The design-space variants' `paper` texts equal the official GPO code's output for the same states, byte for byte:
the feedback request, generation and editing with the feedback (each momentum branch: none, k-list, real-time), the
real-time branch without feedback, the two summarize requests, and the k-list selection of past feedback.

The fixture tests/unit/fixtures/paper_meta_prompt_variants_official.json was written by running the official code
(RUCAIBox/GPO at 765df20: Feedback_Gradient.gen_gradient_text, Generate_based_util_gradient / Edit_based_util_gradient /
Generate_Without_Gradient / Edit_Without_Gradient .gen_util_gradient_text, Real_time_Update and K_Update
.update_momentum, Recency_Selection and Importance_Selection .select with "feedback", W_LR / Wo_LR .use_learning_rate)
unmodified in /tmp with pandas and numpy installed and the dataset class stubbed; only the resulting strings are
committed (see the file's "source").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpo_ray.core.paper_meta_prompt import (
    build_paper_feedback_request,
    build_paper_meta_prompt,
    build_paper_summarize_feedback_request,
    build_paper_summarize_prompts_request,
)
from gpo_ray.core.types import TrajectoryEntry, WrongExample
from gpo_ray.core.variants import join_feedback, select_feedback, wrong_examples
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import PromptPlacement

FIXTURE = json.loads(
    (Path(__file__).parent / "fixtures" / "paper_meta_prompt_variants_official.json").read_text("utf-8")
)
EXAMPLES = [Example(input=e["input"], answers=(e["answer"],)) for e in FIXTURE["examples"]]


def _case_id(c: dict) -> str:
    return c.get("name") or f"{c['strategy']}_k{c['k']}"


@pytest.mark.parametrize("case", FIXTURE["feedback_cases"], ids=_case_id)
def test_feedback_request_matches_official_text(case: dict) -> None:
    wrong = [WrongExample(question=EXAMPLES[i].input, prediction=p, answer=EXAMPLES[i].answer)
             for i, p in case["wrong"]]
    assert build_paper_feedback_request(current_prompt=case["current_prompt"], wrong=wrong) == case["expected"]


@pytest.mark.parametrize("case", FIXTURE["meta_prompt_cases"], ids=_case_id)
def test_meta_prompt_with_feedback_or_carried_prompt_matches_official_text(case: dict) -> None:
    text = build_paper_meta_prompt(
        current_prompt=case["current_prompt"],
        retrieved=[TrajectoryEntry(p, s, i) for i, (p, s) in enumerate(case["retrieved"])],
        format_examples=[EXAMPLES[i] for i in case["format_indices"]],
        edit_budget=case["budget"],
        placement=PromptPlacement(case["placement"]),
        current_score=case["current_score"],
        update=case["update"],
        budget_in_prompt=case["learning_rate"] == "w_lr",
        gradient=case["gradient"],
        previous=TrajectoryEntry(case["previous"][0], case["previous"][1], 0) if case["previous"] else None,
    )
    assert text == case["expected"]


@pytest.mark.parametrize("case", FIXTURE["summarize_cases"], ids=_case_id)
def test_summarize_requests_match_official_text(case: dict) -> None:
    if case["content"] == "prompts":
        text = build_paper_summarize_prompts_request(previous=TrajectoryEntry(*case["previous"], 1),
                                                     current=TrajectoryEntry(*case["current"], 2))
    else:
        text = build_paper_summarize_feedback_request(previous=case["previous"], current=case["current"])
    assert text == case["expected"]


@pytest.mark.parametrize("case", FIXTURE["selection_cases"], ids=_case_id)
def test_feedback_selection_matches_official_methods(case: dict) -> None:
    history = [(text, score) for text, score, _epoch, _step in case["history"]]
    assert select_feedback(history, strategy=case["strategy"], k=case["k"]) == case["expected"]


def test_fixture_covers_every_variant() -> None:
    grid = {(c["update"], c["gradient"] is not None, c["momentum"]) for c in FIXTURE["meta_prompt_cases"]}
    assert grid == {(u, True, m) for u in ("generate", "edit") for m in ("none", "k_list", "real_time")} | {
        (u, False, "real_time") for u in ("generate", "edit")}
    assert {c["learning_rate"] for c in FIXTURE["meta_prompt_cases"]} == {"w_lr", "wo_lr"}
    assert {c["placement"] for c in FIXTURE["meta_prompt_cases"]} == {"end", "beginning"}
    assert {c["content"] for c in FIXTURE["summarize_cases"]} == {"prompts", "feedback"}


def test_real_time_scores_are_shown_rounded_to_two_places() -> None:
    """optimize.py rounds the score it carries with the summarized prompt; the unrounded score renders the same."""
    common = {"current_prompt": "p", "retrieved": [], "format_examples": EXAMPLES[:1], "edit_budget": 5,
              "placement": PromptPlacement.END}
    text = build_paper_meta_prompt(previous=TrajectoryEntry("q", 0.54166666, 1), **common)
    assert "Below is the previous prompt with its score." in text and "Prompt: q\nScore: 0.54\n" in text
    request = build_paper_summarize_prompts_request(previous=TrajectoryEntry("q", 0.5, 1),
                                                    current=TrajectoryEntry("p", 0.3333333333333333, 2))
    assert "Prompt: p\nScore: 0.33\n" in request


def test_wrong_examples_are_the_zero_scores_in_batch_order_and_k_list_feedback_is_joined() -> None:
    graded = [(0.0, "yes"), (1.0, "apple banana {oat}"), (0.5, "rouge-ish"), (0.0, "4")]
    wrong = wrong_examples(EXAMPLES, graded)
    assert [(w.question, w.prediction, w.answer) for w in wrong] == [
        (EXAMPLES[0].input, "yes", "No"), (EXAMPLES[3].input, "4", "no")]
    assert join_feedback(["a", "b"]) == "a\n\nb"
    with pytest.raises(ValueError, match="grades for"):
        wrong_examples(EXAMPLES, graded[:2])


def test_relevance_selection_puts_the_newest_first_then_the_most_similar() -> None:
    history = [("old far", 0.1), ("old near", 0.0), ("middle", 0.2), ("newest", 0.0)]
    vectors = [[0.0, 1.0], [1.0, 0.1], [0.5, 0.5], [1.0, 0.0]]
    assert select_feedback(history, strategy="relevance", k=3, vectors=vectors) == ["newest", "old near", "middle"]
    with pytest.raises(ValueError, match="embedding vector per feedback"):
        select_feedback(history, strategy="relevance", k=3)
