"""Scoring as the official GPO code does it (metric variant "paper"): choice, numeric and exact match; ROUGE-L.

The official evaluation (github.com/RUCAIBox/GPO @ 765df20, src/evaluation/metrics.py get_normalized_prediction
and src/evaluation/eval_utils.py _get_accuracy) strips the reply, normalises it by the task's flags (multiple
choice, number, boolean; src/dataset/*.py get_task_setting), then compares it with the lower-cased reference.
This module is gpo-ray's own implementation of those rules, quirks included, so that a run with
`metric_variants: {...: paper}` scores as the paper did:

- an answer cue ("answer is ", "answer: ", "answer is: "; else "is: ", "are: "; and "#### ") keeps what follows
  the cue, every cue in turn; " is the (correct|right|final) answer" / " is the answer" keeps what precedes it;
- multiple choice: the FIRST bracketed letter left, "(c)" -> "c"; a bare letter or the option's text only
  counts when it is all that is left (after removing punctuation);
- numbers: number words up to twelve, the part after the last "=", no "$ , % € £ :", the first token with a
  digit after a cue (the last one without), trailing letters cut, then rounded to an integer (num_decimals=0:
  17.6 matches 18);
- booleans: punctuation removed, then the whole reply must be the label ("Yes, because ..." is wrong); "true"
  and "1" also match "yes" / "valid", "false" and "0" also match "no" / "invalid";
- dyck_languages: the last run of closing brackets must equal the reference, spaces included;
- word_sorting: the words, one per line or space-separated, must equal the reference's.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence

from gpo_ray.tasks.second_turn import BBH_BOOL_TASKS, BBH_CHOICE_TASKS, BBH_NUMBER_TASKS, BRACKETED
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

_BEHIND_PRIMARY = ("answer is ", "answer: ", "answer is: ")
_BEHIND_SECONDARY = ("is: ", "are: ")
_AHEAD = (" is the correct answer", " is the right answer", " is the final answer", " is the answer")
_HASHES = "#### "
_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        ["one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"], start=1
    )
}
_BRACKETED_LOWER = {f"({c})" for c in string.ascii_lowercase}
_LABELS = (("false", "true"), ("no", "yes"), ("invalid", "valid"))
_CLOSING_RUN = re.compile(r"[>\)\]}]+[ >\)\]}]*")
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def flags(task: str, metric: MetricKind, gold: str) -> tuple[bool, bool, bool]:
    """(multiple choice, number, boolean) as the official get_task_setting gives them; by metric kind otherwise."""
    family, _, sub = task.partition("/")
    if family == "bbh" and sub:
        return sub in BBH_CHOICE_TASKS, sub in BBH_NUMBER_TASKS, sub in BBH_BOOL_TASKS
    if family == "mmlu" or task == "wsc":
        return True, False, False
    if task == "gsm8k":
        return False, True, False
    metric = MetricKind(metric)
    is_label = any(gold.strip().lower() in labels for labels in _LABELS)
    return metric is MetricKind.MULTIPLE_CHOICE, metric is MetricKind.NUMERIC, metric is MetricKind.EXACT_MATCH and is_label


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def normalize(prediction: str, *, multiple_choice: bool, number: bool, boolean: bool) -> str:
    """The reply as the official get_normalized_prediction leaves it (with num_decimals=0)."""
    text = prediction.lower().strip()
    behind = _BEHIND_PRIMARY if any(p in prediction for p in _BEHIND_PRIMARY) else _BEHIND_SECONDARY
    indicated = False
    for cue in (_HASHES, *behind):
        if cue in text:
            text = text.split(cue)[-1]
            indicated = True
    for cue in _AHEAD:
        if cue in text:
            text = text.split(cue)[0]
            indicated = True
    if multiple_choice and (m := BRACKETED.search(text)):
        text = m.group(0)
    if number:
        text = _as_number(text, indicated=indicated)
    if boolean:
        text = text.translate(_NO_PUNCTUATION).strip()
    return text


def _as_number(text: str, *, indicated: bool) -> str:
    text = " ".join(_NUMBER_WORDS.get(w, w) for w in text.split(" "))
    text = text.split("=")[-1]
    for c in "$,%€£:":
        text = text.replace(c, "")
    text = text.strip()
    parts = text.split(" ") if indicated else text.split(" ")[::-1]
    text = next((p for p in parts if any(c.isdigit() for c in p)), parts[0])
    while text and text[-1].isalpha():
        text = text[:-1]
    if text and text[-1] == "-":
        text = text[:-1]
    if _is_float(text):
        return f"{round(float(text), 0):.0f}"
    m = re.search(r"(\d+)(?!.*\d)", text)
    return m.group(0) if m else text


def accuracy(task: str, gold: str, prediction: str) -> int:
    """1 or 0 as the official _get_accuracy compares a normalised prediction with the reference."""
    gold, prediction = str(gold).lower().strip(), str(prediction).lower().strip()
    if task == "bbh/dyck_languages":
        runs = _CLOSING_RUN.findall(prediction)
        return int(bool(runs) and runs[-1].strip() == gold)
    if task == "bbh/word_sorting":
        return _word_sorting(gold, prediction)
    if gold in _BRACKETED_LOWER:
        gold = gold[1]
    if prediction in _BRACKETED_LOWER:
        prediction = prediction[1]
    if prediction == gold or prediction.translate(_NO_PUNCTUATION).strip() == gold.translate(_NO_PUNCTUATION).strip():
        return 1
    for labels in _LABELS:
        if gold in labels:
            as_bool = "true" if labels.index(gold) == 1 else "false"
            if prediction in {"0", "1"}:
                prediction = "true" if prediction == "1" else "false"
            return int(prediction.strip() == as_bool)
    return 0


def _word_sorting(gold: str, prediction: str) -> int:
    want = [w.strip() for w in gold.split(" ")]
    said = [line.strip() for line in prediction.split("\n") if len(line.split(" ")) == 1]
    if said != want:
        said = [w.strip() for w in prediction.split(" ")]
    if said != want:
        said = prediction.split("\n")
        if any(line.split(" ") == want for line in said):
            return 1
    return int(said == want)


def paper_score(task: str, metric: MetricKind, output: str, example: Example) -> float:
    """The official score of a reply: ROUGE-L F averaged over references, else 0/1 accuracy (the reply is stripped
    first, as the official code does)."""
    if metric is MetricKind.ROUGE_L:
        return rouge_l_paper(output, example.answers)
    gold = example.answer
    mc, number, boolean = flags(task, metric, gold)
    return float(accuracy(task, gold, normalize(output.strip(), multiple_choice=mc, number=number, boolean=boolean)))


# --- ROUGE-L as the official GPO code computes it (variant "paper") -------------------------
# evaluation/metrics.py calc_rouge (github.com/RUCAIBox/GPO @ 765df20) calls the `rouge` package
# (Rouge().get_scores(pred, ref)[0]["rouge-l"]["f"]) once per reference and averages the F values.
# That package's ROUGE-L is summary-level: texts are split into sentences at ".", words at single
# spaces (case kept, punctuation attached, no stemming), word counts and LCS unions are *sets* of
# distinct words, and F = 2PR / (P + R + 1e-8). The code below is gpo-ray's own implementation of
# that computation (the package is not a dependency).


def _paper_sentences(text: str) -> list[str]:
    return [" ".join(part.split()) for part in text.split(".") if len(part) > 0]


def _paper_words(sentences: Sequence[str]) -> list[str]:
    return [w for s in sentences for w in s.split(" ")]


def _lcs_words(x: Sequence[str], y: Sequence[str]) -> set[str]:
    """The words of one longest common subsequence of x and y, traced back as the `rouge` package does."""
    n, m = len(x), len(y)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            table[i][j] = table[i - 1][j - 1] + 1 if x[i - 1] == y[j - 1] else max(table[i - 1][j], table[i][j - 1])
    words: set[str] = set()
    i, j = n, m
    while i > 0 and j > 0:
        if x[i - 1] == y[j - 1]:
            words.add(x[i - 1])
            i, j = i - 1, j - 1
        elif table[i - 1][j] > table[i][j - 1]:
            i -= 1
        else:
            j -= 1
    return words


def rouge_l_paper_single(prediction: str, reference: str) -> float:
    """ROUGE-L F of one prediction against one reference, as the `rouge` package's summary level gives it."""
    hyp, ref = _paper_sentences(prediction), _paper_sentences(reference)
    if not hyp or not ref:
        return 0.0  # the package raises on an empty text; an empty answer scores nothing here
    m = len(set(_paper_words(ref)))
    n = len(set(_paper_words(hyp)))
    union: set[str] = set()
    for ref_sentence in ref:
        ref_words = ref_sentence.split(" ")
        for hyp_sentence in hyp:
            union |= _lcs_words(ref_words, hyp_sentence.split(" "))
    recall, precision = len(union) / m, len(union) / n
    return 2.0 * (precision * recall) / (precision + recall + 1e-8)


def rouge_l_paper(output: str, references: Sequence[str]) -> float:
    """The official metric: the mean over references, on the stripped output (no other cleaning)."""
    text = output.strip()
    if not references:
        return 0.0
    return sum(rouge_l_paper_single(text, ref) for ref in references) / len(references)
