"""Metric variants: ROUGE-L as the official GPO code computes it ("paper") against gpo-ray's default.

The expected values are computed by hand from the rules of the `rouge` package that the official
evaluation/metrics.py calls: sentences split at ".", words at spaces (case kept, no stemming), word counts and
LCS unions as sets of distinct words, F = 2PR / (P + R + 1e-8), averaged over the references.
"""

from __future__ import annotations

import pytest

from gpo_ray.tasks.metrics import METRIC_VARIANTS, rouge_l_paper, rouge_l_paper_single, score
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

ROUGE = MetricKind.ROUGE_L


def f(p: float, r: float) -> float:
    return 2 * p * r / (p + r + 1e-8)


@pytest.mark.parametrize(
    ("prediction", "reference", "expected"),
    [
        ("the cat sat on the mat", "the cat sat on the mat", f(1, 1)),  # 5 distinct words on both sides
        ("The cat sat", "the cat sat", f(2 / 3, 2 / 3)),  # case counts: "The" != "the"
        ("cats running", "cat run", 0.0),  # no stemming
        ("a b. b a", "a b a", f(1, 1)),  # distinct words: n = m = 2, union of LCS words {a, b}
        ("b a. a", "a b", f(1, 1)),  # LCS("a b", "b a") traced back to {b}; the sentence "a" adds {a}
        ("the cat, sat", "the cat sat", f(2 / 3, 2 / 3)),  # punctuation stays on the word: "cat," != "cat"
    ],
)
def test_paper_rouge_l_single_reference(prediction, reference, expected):
    assert rouge_l_paper_single(prediction, reference) == pytest.approx(expected, abs=1e-12)


def test_paper_rouge_l_averages_over_references_where_default_takes_the_best():
    example = Example("triples", ("the cat sat", "a dog ran"))
    # reference 1: f(1, 1); reference 2: no word in common -> 0; mean = 0.5
    assert score(ROUGE, "the cat sat", example, variant="paper") == pytest.approx(f(1, 1) / 2)
    assert score(ROUGE, "the cat sat", example) == pytest.approx(1.0)  # default: the best reference


def test_default_stems_and_lowercases_paper_does_not():
    example = Example("triples", ("cat run",))
    assert score(ROUGE, "Cats running", example) == pytest.approx(1.0)
    assert score(ROUGE, "Cats running", example, variant="paper") == 0.0


def test_paper_rouge_l_strips_only_and_empty_scores_zero():
    assert rouge_l_paper("  the cat sat \n", ("the cat sat",)) == pytest.approx(f(1, 1))
    assert rouge_l_paper("", ("the cat sat",)) == 0.0
    assert rouge_l_paper("   ", ("the cat sat",)) == 0.0
    # gpo-ray's default drops an "Answer:" label; the official metric keeps it as a word of the text
    assert rouge_l_paper("Answer: the cat sat", ("the cat sat",)) == pytest.approx(f(3 / 4, 1))  # n = 4 words, 3 in common


def test_unknown_variant_is_an_error():
    assert METRIC_VARIANTS[ROUGE] == ("default", "paper")
    with pytest.raises(ValueError, match="no variant"):
        score(MetricKind.NUMERIC, "42", Example("q", ("42",)), variant="paper")
