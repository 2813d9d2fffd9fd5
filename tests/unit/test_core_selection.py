"""Choosing the next prompt and the run's best prompt."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_ray.core.selection import select_best, select_next
from gpo_ray.core.types import ScoredCandidate, TrajectoryEntry


def cand(prompt: str, score: float, edit_distance: int = 3) -> ScoredCandidate:
    return ScoredCandidate(prompt=prompt, score=score, edit_distance=edit_distance)


def test_next_is_the_best_scoring_candidate() -> None:
    candidates = [cand("A b.", 0.5), cand("C d.", 0.875), cand("E f.", 0.625)]
    assert select_next(candidates, chosen_before=["Start."]) == candidates[1]


def test_next_skips_prompts_chosen_before_ignoring_case_and_whitespace() -> None:
    candidates = [cand("Think step by step.", 0.9), cand("Be brief.", 0.4)]
    assert select_next(candidates, chosen_before=["think  step by STEP."]).prompt == "Be brief."


def test_next_is_none_when_nothing_is_eligible() -> None:
    assert select_next([], chosen_before=[]) is None
    assert select_next([cand("Only.", 1.0)], chosen_before=["Only."]) is None


def test_next_ties_go_to_the_smaller_edit_then_the_smaller_prompt() -> None:
    a = cand("Zeta prompt.", 0.75, edit_distance=2)
    b = cand("Alpha prompt.", 0.75, edit_distance=5)
    c = cand("Beta prompt.", 0.75, edit_distance=2)
    assert select_next([a, b, c], chosen_before=[]) == c
    assert select_next([c, b, a], chosen_before=[]) == c


def test_next_ranks_nan_scores_last() -> None:
    assert select_next([cand("Broken.", math.nan), cand("Fine.", 0.0)], chosen_before=[]).prompt == "Fine."


@given(
    st.lists(
        st.builds(
            cand,
            st.sampled_from(["a", "b", "c", "d", "e"]),
            st.sampled_from([0.0, 0.5, 1.0]),
            st.integers(0, 3),
        ),
        max_size=8,
    )
)
def test_next_does_not_depend_on_candidate_order(candidates: list[ScoredCandidate]) -> None:
    assert select_next(candidates, chosen_before=["a"]) == select_next(candidates[::-1], chosen_before=["a"])


def test_best_is_the_highest_eval_score() -> None:
    trajectory = [
        TrajectoryEntry("Start.", 0.5, 0),
        TrajectoryEntry("Better.", 0.75, 1),
        TrajectoryEntry("Worse.", 0.625, 2),
    ]
    assert select_best(trajectory).prompt == "Better."


def test_best_ties_go_to_the_earliest_step() -> None:
    trajectory = [
        TrajectoryEntry("Later.", 0.75, 3),
        TrajectoryEntry("Start.", 0.75, 0),
        TrajectoryEntry("Middle.", 0.75, 1),
    ]
    assert select_best(trajectory).prompt == "Start."


def test_best_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="empty"):
        select_best([])
