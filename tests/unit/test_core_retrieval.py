"""Retrieval: which past prompts the optimizer sees, and in what order."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpo_ray.core.retrieval import cosine_similarity, retrieve
from gpo_ray.core.types import TrajectoryEntry


def trajectory(*scores: float) -> list[TrajectoryEntry]:
    return [TrajectoryEntry(prompt=f"prompt {i}", score=s, step=i) for i, s in enumerate(scores)]


def steps(entries: list[TrajectoryEntry]) -> list[int]:
    return [e.step for e in entries]


def test_recency_takes_the_last_k_shown_worst_first() -> None:
    traj = trajectory(0.1, 0.9, 0.5, 0.3, 0.4)
    assert steps(retrieve(traj, strategy="recency", k=3)) == [3, 4, 2]  # scores 0.3, 0.4, 0.5


def test_importance_takes_the_best_k_with_ties_to_the_newer() -> None:
    traj = trajectory(0.5, 0.8, 0.5, 0.2, 0.5)
    chosen = retrieve(traj, strategy="importance", k=3)
    assert steps(chosen) == [2, 4, 1]  # 0.8 plus the two newest 0.5s, ascending by score then step


def test_relevance_takes_the_newest_and_its_nearest_older_neighbours() -> None:
    traj = trajectory(0.9, 0.2, 0.4, 0.6, 0.3)
    vectors = [
        [1.0, 0.0],  # step 0: orthogonal to the newest
        [0.6, 0.8],  # step 1: close
        [0.0, -1.0],  # step 2: opposite
        [0.0, 2.0],  # step 3: same direction (length must not matter)
        [0.0, 1.0],  # step 4: the newest
    ]
    chosen = retrieve(traj, strategy="relevance", k=3, vectors=vectors)
    assert steps(chosen) == [1, 4, 3]  # {4, 3, 1} ordered by score 0.2, 0.3, 0.6


def test_relevance_ties_prefer_newer_entries() -> None:
    traj = trajectory(0.1, 0.1, 0.1, 0.1)
    vectors = [[1.0, 0.0]] * 4
    assert steps(retrieve(traj, strategy="relevance", k=2, vectors=vectors)) == [2, 3]


def test_relevance_needs_one_vector_per_entry() -> None:
    traj = trajectory(0.1, 0.2)
    with pytest.raises(ValueError, match="relevance"):
        retrieve(traj, strategy="relevance", k=2)
    with pytest.raises(ValueError, match="1 vectors for 2"):
        retrieve(traj, strategy="relevance", k=2, vectors=[[1.0]])


def test_k_one_relevance_is_just_the_newest() -> None:
    traj = trajectory(0.9, 0.1)
    assert steps(retrieve(traj, strategy="relevance", k=1, vectors=[[1.0], [1.0]])) == [1]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="strategy"):
        retrieve(trajectory(0.1), strategy="random", k=1)
    with pytest.raises(ValueError, match="k must be"):
        retrieve(trajectory(0.1), strategy="recency", k=0)


@pytest.mark.parametrize("strategy", ["recency", "importance", "relevance"])
def test_empty_trajectory_gives_nothing(strategy: str) -> None:
    assert retrieve([], strategy=strategy, k=3, vectors=[]) == []


def test_cosine_similarity() -> None:
    assert cosine_similarity([1.0, 0.0], [3.0, 0.0]) == pytest.approx(1.0)
    assert cosine_similarity([1.0, 0.0], [0.0, 5.0]) == pytest.approx(0.0)
    assert cosine_similarity([1.0, 1.0], [-1.0, -1.0]) == pytest.approx(-1.0)
    assert cosine_similarity([1.0, 1.0], [1.0, 0.0]) == pytest.approx(1 / math.sqrt(2))
    assert cosine_similarity([0.0, 0.0], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match="length"):
        cosine_similarity([1.0], [1.0, 0.0])


scores = st.lists(st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]), min_size=1, max_size=12)


@given(scores, st.integers(1, 15), st.sampled_from(["recency", "importance", "relevance"]), st.data())
def test_any_strategy_returns_min_k_n_distinct_entries_sorted_by_score(
    values: list[float], k: int, strategy: str, data: st.DataObject
) -> None:
    traj = trajectory(*values)
    vectors = data.draw(
        st.lists(st.lists(st.floats(-1, 1), min_size=3, max_size=3), min_size=len(traj), max_size=len(traj))
    )
    chosen = retrieve(traj, strategy=strategy, k=k, vectors=vectors)
    assert len(chosen) == min(k, len(traj))
    assert len(set(steps(chosen))) == len(chosen)
    assert [(e.score, e.step) for e in chosen] == sorted((e.score, e.step) for e in chosen)
    if strategy != "importance":
        assert traj[-1] in chosen  # recency and relevance always show where the optimizer stands
