"""Metric variants: ROUGE-L as the official GPO code computes it ("paper") against gpo-ray's default.

The expected values are computed by hand from the rules of the `rouge` package that the official
evaluation/metrics.py calls: sentences split at ".", words at spaces (case kept, no stemming), word counts and
LCS unions as sets of distinct words, F = 2PR / (P + R + 1e-8), averaged over the references.
"""

from __future__ import annotations

import pytest

from gpo_ray.tasks.metrics import score
from gpo_ray.tasks.paper_metrics import rouge_l_paper, rouge_l_paper_single
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
    with pytest.raises(ValueError, match="no variant"):
        score(MetricKind.NUMERIC, "42", Example("q", ("42",)), variant="best")


# --- the official exact-match rules (paper_metrics.py) ----------------------------------------------------------

MC, EXACT, NUM = MetricKind.MULTIPLE_CHOICE, MetricKind.EXACT_MATCH, MetricKind.NUMERIC
MOVIES = "Find a movie:\nOptions:\n(A) The Front Page\n(B) Maelstrom\n(C) The Lion King"


@pytest.mark.parametrize(
    ("task", "metric", "gold", "reply", "paper", "default"),
    [
        # multiple choice: the first bracketed letter; a bare letter only when it is all that is left
        ("bbh/movie_recommendation", MC, "(C)", "(C)", 1, 1),
        ("bbh/movie_recommendation", MC, "(C)", "The answer is C.", 1, 1),
        ("bbh/movie_recommendation", MC, "(C)", "(C), not (A)", 1, 0),  # the first bracket, not the last
        ("bbh/movie_recommendation", MC, "(C)", "C) The Lion King", 0, 1),
        ("bbh/movie_recommendation", MC, "(C)", "The Lion King", 0, 1),
        ("mmlu/anatomy", MC, "(B)", "answer: (b)", 1, 1),
        # numbers: rounded to an integer, number words, the first number after a cue, the last without
        ("gsm8k", NUM, "18", "18", 1, 1),
        ("gsm8k", NUM, "18", "17.6", 1, 0),
        ("gsm8k", NUM, "12", "twelve", 1, 1),
        ("gsm8k", NUM, "1000", "$1,000", 1, 1),
        ("gsm8k", NUM, "8", "The answer is 8 apples, not 9", 1, 1),
        ("bbh/object_counting", EXACT, "6", "I count 6", 1, 1),
        # booleans: the whole reply must be the label, "true" stands for yes
        ("bbh/navigate", EXACT, "Yes", "Yes.", 1, 1),
        ("bbh/navigate", EXACT, "Yes", "Yes, you return to the start.", 0, 1),
        ("bbh/navigate", EXACT, "Yes", "True", 1, 0),
        ("bbh/formal_fallacies", EXACT, "invalid", "1", 0, 0),
        ("bbh/formal_fallacies", EXACT, "invalid", "0", 1, 0),
        # dyck: spaces matter; word sorting: one word per line or space-separated
        ("bbh/dyck_languages", EXACT, "] )", "] )", 1, 1),
        ("bbh/dyck_languages", EXACT, "] )", "])", 0, 1),
        ("bbh/word_sorting", EXACT, "apple banana cherry", "apple\nbanana\ncherry", 1, 1),
        ("bbh/word_sorting", EXACT, "apple banana cherry", "apple, banana, cherry", 0, 1),
    ],
)
def test_paper_exact_rules_against_the_default(task, metric, gold, reply, paper, default):
    example = Example(MOVIES if metric is MC else "q", (gold,))
    assert score(metric, reply, example, variant="paper", task=task) == paper
    assert score(metric, reply, example, task=task) == default


def test_paper_normalisation_steps():
    from gpo_ray.tasks.paper_metrics import flags, normalize

    assert normalize("  The answer is (B) Maelstrom. ", multiple_choice=True, number=False, boolean=False) == "(b)"
    assert normalize("5 + 3 = 8 kgs", multiple_choice=False, number=True, boolean=False) == "8"
    assert normalize("2.5", multiple_choice=False, number=True, boolean=False) == "2"  # round half to even
    assert normalize("Yes!", multiple_choice=False, number=False, boolean=True) == "yes"
    assert flags("bbh/navigate", EXACT, "Yes") == (False, False, True)
    assert flags("bbh/snarks", MC, "(A)") == (True, False, False)
    assert flags("gsm8k", NUM, "3") == (False, True, False)
    assert flags("mine/labels", EXACT, "no") == (False, False, True)  # a task of one's own: by metric and answer
