"""Answer extraction and scoring on realistic free-form model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rouge_score import rouge_scorer

from gpo_ray.tasks.loaders import load_jsonl_split
from gpo_ray.tasks.metrics import extract_answer, score
from gpo_ray.tasks.loaders import infer_metric
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

MC, EXACT, NUM, ROUGE = MetricKind.MULTIPLE_CHOICE, MetricKind.EXACT_MATCH, MetricKind.NUMERIC, MetricKind.ROUGE_L

MOVIES = (
    "Find a movie similar to Batman, The Mask, The Fugitive, Pretty Woman:\nOptions:\n"
    "(A) The Front Page\n(B) Maelstrom\n(C) The Lion King\n(D) Lamerica"
)


# --- extraction without the shared data ---------------------------------------------------


@pytest.mark.parametrize(
    "output",
    [
        "(C)",
        "C",
        "C) The Lion King",
        "the answer is C",
        "Answer: (c)",
        "**Answer:** C",
        "Let's think step by step. The list is all early-90s hits. So the answer is (C).",
        "I first thought (A), but (A) is a 1931 film. The answer is (C) The Lion King.",
        "<think>Maybe (A)? No.</think>\nThe answer is (C).",
        "So the answer is The Lion King.",
        "The correct option is c",
        "Answer: (C)\n\nQuestion: Find a movie similar to Star Wars.\nAnswer: (A)",
    ],
)
def test_multiple_choice_letter_forms(output: str) -> None:
    assert extract_answer(MC, output, question=MOVIES) == "C"
    assert score(MC, output, Example(MOVIES, ("(C)",))) == 1.0


@pytest.mark.parametrize(
    "output",
    ["The answer is (B).", "I am not sure.", "A bird in the hand.", "The answer is (F).", ""],
)
def test_multiple_choice_wrong_or_missing(output: str) -> None:
    assert score(MC, output, Example(MOVIES, ("(C)",))) == 0.0


def test_letters_outside_the_offered_options_are_ignored() -> None:
    # "(F)" is not an option of this question; the last real option named wins.
    output = "The Lion King (C) fits best.\nThe Fugitive (F) is already in the list."
    assert extract_answer(MC, output, question=MOVIES) == "C"
    assert extract_answer(MC, output) == "F"  # without the question, any letter counts


@pytest.mark.parametrize(
    ("output", "number"),
    [
        ("18", "18"),
        ("She spends $54 on hats, so $36 on scarves: 36 / 2 = 18 scarves.", "18"),
        ("The answer is $18.00.", "18"),
        ("It is 18.0", "18"),
        ("Total: 1,250 + 750 = 2,000 dollars.\n#### 2,000", "2000"),
        ("The answer is: 5 + 13 = 18. That leaves 2 pears.", "18"),
        ("So the final answer is \\boxed{18}. Check: 9 * 2 = 18.", "18"),
        ("The answer is eight.", "8"),
        ("The temperature drops to -4 degrees.", "-4"),
        ("It is 0.5 of the cake.", "0.5"),
        ("50% of them left.", "50"),
        ("I cannot tell.", ""),
    ],
)
def test_numeric_extraction(output: str, number: str) -> None:
    assert extract_answer(NUM, output) == number


def test_numeric_scoring_tolerates_format_not_value() -> None:
    example = Example("q", ("18",))
    assert score(NUM, "The answer is 18.0 scarves.", example) == 1.0
    assert score(NUM, "The answer is 18.5 scarves.", example) == 0.0
    assert score(NUM, "no idea", example) == 0.0
    assert score(NUM, "That is 1,000,000.", Example("q", ("1000000",))) == 1.0


@pytest.mark.parametrize(
    ("output", "span"),
    [
        ("So the answer is No.", "No"),
        ('The answer is "valid".', "valid"),
        ("Answer:\nabc\ndef\n\nThat is all.", "abc\ndef"),
        ("First line\nLast line.", "Last line"),
    ],
)
def test_exact_match_span(output: str, span: str) -> None:
    assert extract_answer(EXACT, output) == span


def test_exact_match_normalises_case_space_and_punctuation() -> None:
    example = Example("Sort the following words alphabetically: List: pear apple", ("apple pear",))
    assert score(EXACT, "The answer is: Apple,  PEAR.", example) == 1.0
    assert score(EXACT, "apple\npear", example) == 1.0
    assert score(EXACT, "The answer is pear apple.", example) == 0.0


def test_rouge_l_uses_the_best_reference() -> None:
    example = Example("triples", ("Alan Bean was a test pilot.", "Completely different words here."))
    assert score(ROUGE, "Alan Bean was a test pilot.", example) == pytest.approx(1.0)
    partial = score(ROUGE, "Output: Alan Bean was a pilot.", example)
    assert 0.5 < partial < 1.0
    assert score(ROUGE, "", example) == 0.0
    assert extract_answer(ROUGE, "Output: Alan Bean flew.") == "Alan Bean flew."


def test_scores_stay_in_the_unit_interval() -> None:
    for kind, example in [
        (MC, Example(MOVIES, ("(C)",))),
        (EXACT, Example("q", ("Yes",))),
        (NUM, Example("q", ("3",))),
        (ROUGE, Example("q", ("a b c",))),
    ]:
        for output in ["", "(C)", "Yes", "3", "a b c", "x" * 500, "The answer is"]:
            assert 0.0 <= score(kind, output, example) <= 1.0


# --- real lines from the paper's data -----------------------------------------------------


def real(data: Path, folder: str, *, split: str = "eval", index: int = 0) -> Example:
    return load_jsonl_split(data / folder / f"{split}.jsonl", id_prefix=split)[index]


@pytest.mark.parametrize(
    ("folder", "kind", "gold", "output", "expected"),
    [
        # multiple choice: BBH, WSC, MMLU
        ("BIG-Bench-Hard/date_understanding", MC, "(F)",
         "The palindrome day of 2020 is 02/02/2020, so tomorrow is 02/03/2020. So the answer is (F).", 1.0),
        ("BIG-Bench-Hard/date_understanding", MC, "(F)", "Tomorrow is 02/03/2020, so the answer is 02/03/2020.", 1.0),
        ("BIG-Bench-Hard/date_understanding", MC, "(F)", "The answer is (E) 02/03/1964.", 0.0),
        ("BIG-Bench-Hard/geometric_shapes", MC, "(B)",
         "The path visits 7 distinct points and closes, so it draws a heptagon.\nAnswer: B", 1.0),
        ("BIG-Bench-Hard/geometric_shapes", MC, "(B)", "Answer: (I) sector", 0.0),
        ("BIG-Bench-Hard/penguins_in_a_table", MC, "(A)",
         "After deleting Bernard: Louis (7, 11 kg), Vincent (9, 11 kg), Gwen (8, 15 kg). Only Gwen qualifies. "
         "So the answer is (A).", 1.0),
        ("common-nlp/WSC", MC, "(B)", '"She" had such a bad start, so "she" is Sally.\nThe answer is (B)', 1.0),
        ("common-nlp/WSC", MC, "(B)", "Answer: Sally", 1.0),
        ("common-nlp/WSC", MC, "(B)", "The pronoun refers to Sue.\nThe answer is (A) Sue", 0.0),
        ("MMLU/high_school_physics", MC, "(B)",
         "Without gravity the Moon would move off in a straight line but keep spinning.\n"
         "B) It would continue rotating on its axis, but it would stop revolving around the Earth.", 1.0),
        ("MMLU/high_school_physics", MC, "(B)", "Answer: (B)\n\nQuestion: What is a newton?\nAnswer: (D)", 1.0),
        # exact match: BBH free-form
        ("BIG-Bench-Hard/web_of_lies", EXACT, "No",
         "Audrie tells the truth. So Yoland lies, Shaunda lies, Raymond tells the truth, and Maybelle lies. "
         "So the answer is No.", 1.0),
        ("BIG-Bench-Hard/web_of_lies", EXACT, "No", "Yes, Maybelle tells the truth.", 0.0),
        ("BIG-Bench-Hard/causal_judgement", EXACT, "Yes", "Most people would say Suzy caused it.\nAnswer: Yes.", 1.0),
        ("BIG-Bench-Hard/object_counting", EXACT, "13",
         "flute (1), trumpet (1), three accordions (3), three violins (3), drum (1), three clarinets (3), "
         "trombone (1). 1 + 1 + 3 + 3 + 1 + 3 + 1 = 13. So the answer is 13.", 1.0),
        ("BIG-Bench-Hard/object_counting", EXACT, "13", "The answer is thirteen.", 1.0),
        ("BIG-Bench-Hard/object_counting", EXACT, "13", "I count 12 musical instruments.", 0.0),
        ("BIG-Bench-Hard/word_sorting", EXACT,
         "anheuser bungle chaperon frame hippodrome keller miterwort prompt spidery together yolk",
         "The answer is: anheuser, bungle, chaperon, frame, hippodrome, keller, miterwort, prompt, spidery, "
         "together, yolk.", 1.0),
        ("BIG-Bench-Hard/word_sorting", EXACT,
         "anheuser bungle chaperon frame hippodrome keller miterwort prompt spidery together yolk",
         "The answer is anheuser bungle chaperon frame hippodrome keller miterwort prompt together spidery yolk",
         0.0),
        ("BIG-Bench-Hard/dyck_languages", EXACT, ">", 'Only the first "<" is still open. So the answer is >', 1.0),
        ("BIG-Bench-Hard/dyck_languages", EXACT, ">", "The full sequence is [ ] < { < { [ ( ) ] } > } >", 1.0),
        ("BIG-Bench-Hard/dyck_languages", EXACT, ">", "So the answer is } >", 0.0),
        ("BIG-Bench-Hard/boolean_expressions", EXACT, "True",
         "not True = False. False or False = False. False or True = True. So the answer is True.", 1.0),
        ("BIG-Bench-Hard/boolean_expressions", EXACT, "True", "not True or False or ( True ) evaluates to True", 1.0),
        ("BIG-Bench-Hard/boolean_expressions", EXACT, "True", "The answer is False.", 0.0),
        ("BIG-Bench-Hard/formal_fallacies", EXACT, "valid",
         "Carmen is a daughter of Hattie, so she cannot be a niece of Shona. So the answer is valid.", 1.0),
        ("BIG-Bench-Hard/formal_fallacies", EXACT, "valid", "The argument is deductively invalid.", 0.0),
        ("BIG-Bench-Hard/sports_understanding", EXACT, "yes",
         "Michael Porter Jr. is a basketball player, and calling for the screen is part of basketball. "
         "So the answer is yes.", 1.0),
        ("BIG-Bench-Hard/sports_understanding", EXACT, "yes", "The sentence is plausible.", 1.0),
        ("BIG-Bench-Hard/sports_understanding", EXACT, "yes", "No.", 0.0),
        ("BIG-Bench-Hard/multistep_arithmetic_two", EXACT, "-76",
         "5 * -2 + 8 * 1 = -2. 9 + -3 * -8 - -5 = 38. -2 * 38 = -76. So the answer is -76.", 1.0),
        ("BIG-Bench-Hard/multistep_arithmetic_two", EXACT, "-76", "So the answer is 76.", 0.0),
        # numeric: GSM8K
        ("reasoning/GSM8K", NUM, "16",
         "The ratio 3:5 has 8 parts; the girls have 2 more parts, which are 4 students, so a part is 2.\n"
         "8 x 2 = 16 students. The answer is 16.", 1.0),
        ("reasoning/GSM8K", NUM, "16", "There are **16** students in the classroom.", 1.0),
        ("reasoning/GSM8K", NUM, "16", "3 + 5 = 8 parts, so there are 8 students.", 0.0),
    ],
)
def test_real_examples(shared_data_dir: Path, folder: str, kind: MetricKind, gold: str, output: str, expected: float):
    example = real(shared_data_dir, folder)
    assert example.answer == gold  # the line this case was written for
    assert score(kind, output, example) == expected


def test_gsm8k_reference_solutions_score_full_marks(shared_data_dir: Path) -> None:
    """The dataset's own worked solutions ("... <<3+5=8>>8 ... #### 16") are correct outputs."""
    path = shared_data_dir / "reasoning" / "GSM8K" / "eval.jsonl"
    examples = load_jsonl_split(path, id_prefix="eval")
    solutions = [json.loads(line)["solution"] for line in path.read_text(encoding="utf-8").split("\n") if line]
    assert len(solutions) == len(examples) == 100
    assert [score(NUM, s, e) for s, e in zip(solutions, examples)] == [1.0] * 100


@pytest.mark.parametrize(
    "family",
    ["BIG-Bench-Hard", "MMLU", "common-nlp/WSC"],
)
def test_every_gold_answer_is_recognised_and_wrong_ones_are_not(shared_data_dir: Path, family: str) -> None:
    """Over whole real splits: "the answer is <gold>" scores 1, a different answer scores 0."""
    root = shared_data_dir / family
    folders = [root] if (root / "eval.jsonl").is_file() else sorted(p for p in root.iterdir() if p.is_dir())
    if family == "MMLU":
        folders = folders[::10]
    flips = {"yes": "no", "no": "yes", "true": "false", "false": "true", "valid": "invalid", "invalid": "valid"}
    checked = 0
    for folder in folders:
        examples = load_jsonl_split(folder / "eval.jsonl", id_prefix="eval")
        kind = infer_metric("mmlu/x" if family == "MMLU" else f"bbh/{folder.name}", examples)
        for example in examples:
            gold = example.answer
            assert score(kind, f"Let's think step by step.\nSo the answer is {gold}.", example) == 1.0, example
            if gold.startswith("("):
                wrong = "(A)" if gold != "(A)" else "(B)"
            elif gold.lower() in flips:
                wrong = flips[gold.lower()]
            elif set(gold) <= set("()[]{}<> "):
                wrong = gold + " )"
            elif gold.lstrip("-").isdigit():
                wrong = str(int(gold) + 1)
            else:
                wrong = gold + " extra"
            assert score(kind, f"So the answer is {wrong}.", example) == 0.0, example
            checked += 1
    assert checked >= 48


def test_webnlg_rouge_l_matches_the_reference_library(shared_data_dir: Path) -> None:
    example = real(shared_data_dir, "common-nlp/WebNLG")
    assert len(example.answers) == 3
    output = (
        "Adonis Georgiadis served under Prime Minister Antonis Samaras, who was succeeded by Konstantinos Mitsotakis."
    )
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    best = max(scorer.score(ref, output)["rougeL"].fmeasure for ref in example.answers)
    assert score(ROUGE, output, example) == pytest.approx(best)
    assert score(ROUGE, example.answers[1], example) == pytest.approx(1.0)
    assert score(ROUGE, "The weather in Paris is mild in spring.", example) < 0.2


def test_text_answers_that_parse_as_decimals_are_compared_as_text() -> None:
    assert score(EXACT, "The answer is NaN.", Example("q", ("NaN",))) == 1.0
    assert score(EXACT, "The answer is 0.", Example("q", ("NaN",))) == 0.0
    assert score(EXACT, "The answer is 1e5", Example("q", ("1e5",))) == 1.0


def test_metric_kind_may_be_given_as_its_value() -> None:
    assert score("numeric", "The answer is 7.", Example("q", ("7",))) == 1.0  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        score("accuracy", "7", Example("q", ("7",)))  # type: ignore[arg-type]
