"""Answer extraction from free model output, then scoring in [0, 1].

Task models do not answer in a fixed format: they reason first, say "the answer is (B)", write
"Answer: b", bold the answer, or keep writing the next question. Extraction therefore looks for an
explicit answer cue first ("the answer is X", "Answer: X", "#### X", "\\boxed{X}", the last one that
yields an answer of the right kind), then falls back to the last line and finally to the whole
output. Scoring compares what was extracted with the reference the way the metric needs: option
letters, normalised strings, numbers, or ROUGE-L. All of it is pure: no I/O, no state.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from gpo_ray.tasks.paper_metrics import paper_score
from gpo_ray.tasks.types import Example
from gpo_ray.vocabulary import MetricKind

# --- cleaning -------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.S | re.I)
# A model that keeps going after its answer starts the next turn; nothing after that is its answer.
_NEXT_TURN = re.compile(r"\n\s*(?:Q|Question|Input|Human|User|Problem)\s*:", re.I)
_MARKUP = re.compile(r"\*\*|__|`")


def _clean(output: str) -> str:
    text = _THINK_BLOCK.sub(" ", output)
    text = _MARKUP.sub("", text).replace("\u2212", "-").replace("\r\n", "\n")
    for m in _NEXT_TURN.finditer(text):
        if text[: m.start()].strip():
            text = text[: m.start()]
            break
    return text.strip()


# --- answer cues ----------------------------------------------------------------------------

_CUE = re.compile(
    r"####"
    r"|\\boxed\{"
    r"|\banswers?(?:\s+to\s+(?:this|the)\s+(?:question|problem))?\s*"
    r"(?:(?:is|are|would\s+be|should\s+be|will\s+be|=)\s*[:：]?|[:：\-–—])"
    r"|\b(?:option|choice)\s+(?:is|would\s+be|should\s+be)\s*[:：]?",
    re.I,
)


def _cue_spans(text: str) -> list[str]:
    """What follows each answer cue, last cue first; empty spans are dropped."""
    spans = []
    for m in _CUE.finditer(text):
        rest = text[m.end() :]
        if m.group(0).lower().startswith("\\boxed"):
            span = _until_closing_brace(rest)
        else:
            first_line, _, after = rest.partition("\n")
            # "Answer:" at the end of a line: the answer is the block on the next lines.
            span = first_line if first_line.strip() else after.strip().split("\n\n")[0]
        span = span.strip()
        if span:
            spans.append(span)
    return spans[::-1]


def _until_closing_brace(text: str) -> str:
    depth = 1
    for i, c in enumerate(text):
        depth += {"{": 1, "}": -1}.get(c, 0)
        if depth == 0:
            return text[:i]
    return text


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _strip_decoration(span: str) -> str:
    """Surrounding quotes and final punctuation are not part of an answer."""
    span = span.strip().strip("\"'“”‘’").strip()
    span = re.sub(r"[.!。;,]+$", "", span).strip()
    return span.strip("\"'“”‘’").strip()


# --- multiple choice ------------------------------------------------------------------------

_OPTION_LINE = re.compile(r"^\s*\(([A-Z])\)\s*(.+?)\s*$", re.M)
_LETTER_IN_PARENS = re.compile(r"\(([A-Za-z])\)")
_UPPER_LETTER_IN_PARENS = re.compile(r"\(([A-Z])\)")
_LETTER_AT_START = re.compile(r"^\(?([A-Z])(?:[).:,]|\s|$)")
_LOWER_LETTER_AT_START = re.compile(r"^\(?([a-z])(?:\)|[.:]?\s*$)")
_NAMED_OPTION = re.compile(r"\b(?:option|choice)\s+\(?([A-Z])\b", re.I)
_LINE_IS_LETTER = re.compile(r"^\(?([A-Z])\)?[.:]?$|^\(?([A-Z])[).:]\s+\S")
_GOLD_LETTER = re.compile(r"^\(?([A-Za-z])\)?$")


def parse_options(question: str) -> dict[str, str]:
    """The "(A) text" lines of a question: letter -> option text."""
    return {m.group(1): m.group(2) for m in _OPTION_LINE.finditer(question)}


def _letter_in_span(span: str, options: dict[str, str]) -> str | None:
    allowed = set(options) or None

    def ok(letter: str) -> str | None:
        letter = letter.upper()
        return letter if allowed is None or letter in allowed else None

    span = span.strip()
    for pattern in (_LETTER_IN_PARENS, _NAMED_OPTION):
        for m in pattern.finditer(span):
            if found := ok(m.group(1)):
                return found
    for pattern in (_LETTER_AT_START, _LOWER_LETTER_AT_START):
        m = pattern.match(span)
        if m and (found := ok(m.group(1))):
            return found
    return _option_by_text(span, options)


def _option_by_text(span: str, options: dict[str, str]) -> str | None:
    """An answer given as the option's text ("the answer is The Lion King")."""
    said = _words(span)
    if not said or not options:
        return None
    texts = {letter: _words(text) for letter, text in options.items()}
    exact = [letter for letter, words in texts.items() if words == said]
    if len(exact) == 1:
        return exact[0]
    padded = f" {said} "
    contained = [letter for letter, words in texts.items() if words and f" {words} " in padded]
    # "12/25/1937" also contains "1937"-like shorter options: keep only the longest matches.
    contained = [a for a in contained if not any(a != b and texts[a] in texts[b] for b in contained)]
    return contained[0] if len(contained) == 1 else None


def _extract_letter(text: str, options: dict[str, str]) -> str | None:
    for span in _cue_spans(text):
        if found := _letter_in_span(span, options):
            return found
    allowed = set(options) or None
    last = _last_line(text)
    m = _LINE_IS_LETTER.match(last)
    if m and (letter := m.group(1) or m.group(2)) and (allowed is None or letter in allowed):
        return letter
    for pattern in (_UPPER_LETTER_IN_PARENS, _NAMED_OPTION):  # the last "(B)" / "option B" said
        for m in reversed(list(pattern.finditer(text))):
            if allowed is None or m.group(1).upper() in allowed:
                return m.group(1).upper()
    return _option_by_text(last, options) or _option_by_text(text, options)


def _score_choice(output: str, example: Example) -> float:
    golds = [m.group(1).upper() for a in example.answers if (m := _GOLD_LETTER.match(a.strip()))]
    if not golds:
        # A few BBH multiple-choice tasks carry a free-text target; score those as text.
        return _score_exact(output, example)
    letter = _extract_letter(_clean(output), parse_options(example.input))
    return 1.0 if letter is not None and letter in golds else 0.0


# --- numbers --------------------------------------------------------------------------------

_NUMBER = re.compile(r"(?<![\w.])-?\$?(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?!\d)")
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
} | {"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.I)


def _numbers(text: str) -> list[Decimal]:
    found = []
    for m in _NUMBER.finditer(text):
        raw = m.group(0).replace("$", "").replace(",", "")
        try:
            found.append(Decimal(raw))
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            continue
    return found


def _number_in_span(span: str) -> Decimal | None:
    """First number after the cue; in "5 + 3 = 8" the result after '=' is the answer."""
    sentence = re.split(r"\.(?:\s|$)|\n", span, maxsplit=1)[0]
    numbers = _numbers(sentence)
    if numbers:
        return numbers[-1] if "=" in sentence else numbers[0]
    words = _NUMBER_WORD.findall(sentence)
    return Decimal(_NUMBER_WORDS[words[0].lower()]) if words else None


def _extract_number(text: str) -> Decimal | None:
    for span in _cue_spans(text):
        if (number := _number_in_span(span)) is not None:
            return number
    numbers = _numbers(text)
    if numbers:
        return numbers[-1]
    words = _NUMBER_WORD.findall(text)
    return Decimal(_NUMBER_WORDS[words[-1].lower()]) if words else None


_PLAIN_NUMBER = re.compile(r"^-?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?$")


def _as_number(text: str) -> Decimal | None:
    """A reference answer as a number, if it is one ("1,000", "$18", "-3.5"; not "NaN" or "1e5")."""
    text = text.strip()
    if not _PLAIN_NUMBER.match(text):
        return None
    return Decimal(text.replace(",", "").replace("$", ""))


def _same_number(a: Decimal, b: Decimal) -> bool:
    return abs(a - b) <= Decimal("1e-6") * max(Decimal(1), abs(b))


def _format_number(number: Decimal) -> str:
    if number == number.to_integral_value():
        return str(number.quantize(Decimal(1)))
    return format(number.normalize(), "f")


def _score_numeric(output: str, example: Example) -> float:
    predicted = _extract_number(_clean(output))
    if predicted is None:
        return 0.0
    for answer in example.answers:
        gold = _as_number(answer)
        if gold is not None and _same_number(predicted, gold):
            return 1.0
    return 0.0


# --- exact match (BBH free-form) ------------------------------------------------------------

_LABEL_CLASSES = ({"yes", "no"}, {"true", "false"}, {"valid", "invalid"})
_BRACKETS = set("()[]{}<>")
_LIST_MARKER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+", re.M)
_WORD = re.compile(r"[a-z0-9]+(?:['’.\-/][a-z0-9]+)*")


def _words(text: str) -> str:
    """Lower-case words joined by one space: case, spacing, commas and bullets do not matter."""
    return " ".join(_WORD.findall(_LIST_MARKER.sub(" ", text).lower()))


def _exact_span(text: str) -> tuple[str, bool]:
    """The answer span and whether an explicit cue marked it."""
    spans = _cue_spans(text)
    if spans:
        return _strip_decoration(spans[0]), True
    return _strip_decoration(_last_line(text)), False


# Said instead of yes/no, e.g. in sports_understanding ("Is the following sentence plausible?").
_YES_NO_SYNONYMS = {"plausible": "yes", "implausible": "no"}


def _label_in(text: str, labels: set[str], *, first_word_wins: bool) -> str | None:
    """Which label the text says: a leading "No, ..." decides, otherwise the last label said."""
    lowered = re.sub(r"\bnot\s+(valid|plausible)\b", r"in\1", text.lower())
    words = re.findall(r"[a-z]+", lowered)
    if first_word_wins and words and words[0] in labels:
        return words[0]
    found = [w for w in words if w in labels]
    if not found and labels == {"yes", "no"}:
        found = [_YES_NO_SYNONYMS[w] for w in words if w in _YES_NO_SYNONYMS]
    return found[-1] if found else None


def _score_exact(output: str, example: Example) -> float:
    text = _clean(output)
    return max((_exact_matches(text, answer, example) for answer in example.answers), default=0.0)


def _exact_matches(text: str, gold: str, example: Example) -> float:
    gold = gold.strip()
    if _GOLD_LETTER.match(gold) and gold.startswith("("):
        return _score_choice(text, Example(input=example.input, answers=(gold,)))
    if (gold_number := _as_number(gold)) is not None:
        predicted = _extract_number(text)
        return float(predicted is not None and _same_number(predicted, gold_number))
    span, explicit = _exact_span(text)
    for labels in _LABEL_CLASSES:
        if gold.lower() in labels:
            candidates = [(span, True)] if explicit else []
            candidates += [(_last_line(text), False), (text, False)]
            for candidate, first_word_wins in candidates:
                if (label := _label_in(candidate, labels, first_word_wins=first_word_wins)) is not None:
                    return float(label == gold.lower())
            return 0.0
    if gold and set(gold.replace(" ", "")) <= _BRACKETS:
        return float(_brackets_match(span, gold, example.input))
    said = {_words(span)} if explicit else {_words(span), _words(text)}
    return float(_words(gold) in said)


def _brackets_match(span: str, gold: str, question: str) -> bool:
    """Dyck completion: spacing is free, and repeating the whole sequence is also right."""
    said = "".join(c for c in span if c in _BRACKETS)
    want = gold.replace(" ", "")
    if said == want:
        return True
    given = "".join(c for c in question.rpartition("Input:")[2] if c in _BRACKETS)
    return bool(given) and said == given + want


# --- ROUGE-L --------------------------------------------------------------------------------

_LEADING_LABEL = re.compile(r"^\s*(?:answer|output|text|response)\s*:\s*", re.I)


def _rouge_l(output: str, references: Sequence[str]) -> float:
    from rouge_score import rouge_scorer  # lazily: it imports nltk, about half a second

    text = _LEADING_LABEL.sub("", _clean(output))
    if not text.strip():
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return max((scorer.score(ref, text)["rougeL"].fmeasure for ref in references), default=0.0)


# --- public API -----------------------------------------------------------------------------

def extract_answer(kind: MetricKind, output: str, *, question: str | None = None) -> str:
    """What the model answered, for display and debugging ("" when nothing could be found).

    MULTIPLE_CHOICE gives the option letter ("B"), NUMERIC a canonical number ("18"),
    EXACT_MATCH the answer span, ROUGE_L the cleaned text. `question` lets multiple choice
    restrict letters to the offered options and recognise an answer given as option text.
    """
    kind = MetricKind(kind)
    text = _clean(output)
    if kind is MetricKind.MULTIPLE_CHOICE:
        return _extract_letter(text, parse_options(question or "")) or ""
    if kind is MetricKind.NUMERIC:
        number = _extract_number(text)
        return "" if number is None else _format_number(number)
    if kind is MetricKind.EXACT_MATCH:
        return _exact_span(text)[0]
    return _LEADING_LABEL.sub("", text)


def score(kind: MetricKind, output: str, example: Example, *, variant: str = "default", task: str = "") -> float:
    """How right `output` is for `example`, in [0, 1] (1/0 except ROUGE-L), by the variant
    "default" (gpo-ray's scoring) or "paper" (the official GPO code's).

    The "paper" variants score as the official GPO code does (paper_metrics.py, which needs the task's name for
    its per-task rules).
    """
    kind = MetricKind(kind)
    if variant not in ("default", "paper"):
        raise ValueError(f"metric {kind.value!r} has no variant {variant!r}; known: default, paper")
    if variant == "paper":
        return paper_score(task, kind, output, example)
    if kind is MetricKind.MULTIPLE_CHOICE:
        return _score_choice(output, example)
    if kind is MetricKind.NUMERIC:
        return _score_numeric(output, example)
    if kind is MetricKind.EXACT_MATCH:
        return _score_exact(output, example)
    if kind is MetricKind.ROUGE_L:
        return _rouge_l(output, example.answers)
    raise ValueError(f"unknown metric kind: {kind!r}")
