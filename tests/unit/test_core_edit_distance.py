"""Word-level edit distance: known values and the metric laws."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gpo_ray.core.edit_distance import within_budget, word_edit_distance


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ("", "", 0),
        ("", "Let's think step by step.", 5),
        ("Let's think step by step.", "Let's think step by step.", 0),
        ("Let's think step by step.", "Let's think  step\nby step.", 0),  # whitespace is not a word
        ("Let's think step by step.", "Let us think step by step.", 2),  # replace + insert
        ("Let's think step by step.", "Think step by step.", 2),  # drop "Let's", "think" -> "Think"
        ("Think", "think", 1),  # case matters to the task model
        ("a b c d", "d c b a", 4),
        ("kitten sitting on mat", "sitting kitten on mat", 2),
        ("one two three", "one three", 1),
    ],
)
def test_known_distances(a: str, b: str, expected: int) -> None:
    assert word_edit_distance(a, b) == expected


def test_long_prompts_are_quick_and_exact() -> None:
    words = [f"w{i}" for i in range(300)]
    a = " ".join(words)
    b = " ".join(words[:100] + ["new"] + words[101:250] + words[260:])  # 1 replacement, 10 deletions
    assert word_edit_distance(a, b) == 11


def test_within_budget_is_inclusive() -> None:
    old, new = "Let's think step by step.", "Let us reason step by step."
    assert word_edit_distance(old, new) == 3
    assert within_budget(old, new, 3)
    assert not within_budget(old, new, 2)


words = st.lists(st.sampled_from(["a", "b", "c", "think", "step", "Step."]), max_size=8)


def text(ws: list[str]) -> str:
    return " ".join(ws)


@settings(max_examples=200)
@given(words, words)
def test_symmetric_and_bounded(x: list[str], y: list[str]) -> None:
    d = word_edit_distance(text(x), text(y))
    assert d == word_edit_distance(text(y), text(x))
    assert abs(len(x) - len(y)) <= d <= max(len(x), len(y))


@settings(max_examples=200)
@given(words, words)
def test_zero_iff_same_words(x: list[str], y: list[str]) -> None:
    assert (word_edit_distance(text(x), text(y)) == 0) == (x == y)


@settings(max_examples=200)
@given(words, words, words)
def test_triangle_inequality(x: list[str], y: list[str], z: list[str]) -> None:
    assert word_edit_distance(text(x), text(z)) <= word_edit_distance(text(x), text(y)) + word_edit_distance(
        text(y), text(z)
    )


@settings(max_examples=200)
@given(words, st.integers(0, 8), st.sampled_from(["new", "word"]))
def test_one_insertion_costs_one(x: list[str], at: int, word: str) -> None:
    y = x[:at] + [word] + x[at:]
    assert word_edit_distance(text(x), text(y)) == 1
