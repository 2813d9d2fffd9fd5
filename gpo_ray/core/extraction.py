"""Turning an optimizer reply into a candidate prompt, and keeping only new, sane candidates.

`extract_candidate` tries, in order:

1. json: the string field "prompt" of a JSON object, code fences and chatter around it tolerated
   (tried first for structured replies; for unstructured ones only when there are no markers,
   since small models sometimes answer in JSON anyway);
2. markers: the text between the LAST <START> and the <END> after it (the optimizer may first
   quote the instructions); a missing <END> means "to the end of the reply";
3. fallback, when there are neither markers nor JSON: the first non-empty line that is not a
   heading, a label ("Here is the new prompt:"), a score line or chatter ("Sure! ..."), and has
   2 to 200 words. This rescues small models that ignore the format; it can pick a wrong line.

The text found is normalized (`normalize_prompt`) and then rejected when it is empty, has no letters,
is over 300 words or 4,000 characters, or still holds meta-prompt scaffolding (<PROMPT>, <current_prompt>, <START>, <END>).
The second element of the result says how: "json", "markers", "fallback" or "rejected:<reason>".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

MAX_WORDS = 300
# 300 words of long English words; a candidate beyond it is a runaway reply (one "word" of megabytes passes the
# word count), and every later step would carry it to the endpoint in each request.
MAX_CHARS = 4_000
FALLBACK_MIN_WORDS = 2
FALLBACK_MAX_WORDS = 200

_START = re.compile(r"<\s*START\s*>", re.IGNORECASE)
_END = re.compile(r"<\s*END\s*>", re.IGNORECASE)
# The meta-prompt's own "between <START> and <END>", echoed back, is not a candidate called "and".
_ECHOED_INSTRUCTION = re.compile(r"<\s*START\s*>\s*and\s*<\s*END\s*>", re.IGNORECASE)
_SCAFFOLDING = re.compile(r"<\s*/?\s*(PROMPT|current_prompt|START|END)\s*>", re.IGNORECASE)
_FENCE = re.compile(r"^```[\w+-]*[ \t]*\n?(.*?)\n?```$", re.DOTALL)
_LABEL = re.compile(
    r"^[*_]*(?:(?:new|improved|revised|updated|better|final)\s+)?(?:prompt|instruction)[*_]*\s*:[*_]*\s*",
    re.IGNORECASE,
)
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
_HEADING = re.compile(r"^(#+\s|[-=*_]{3,}$|\*\*[^*]+\*\*:?$)")
_SCORE_LINE = re.compile(r"^\W*score\s*[:=]", re.IGNORECASE)
_CHATTER = re.compile(
    r"^\W*(sure|certainly|okay|ok|of course|here is|here's|here are|below is|i have|i've|i will|i'll)\b",
    re.IGNORECASE,
)


def _strip_fence(text: str) -> str:
    match = _FENCE.match(text.strip())
    return match.group(1) if match else text


def normalize_prompt(text: str) -> str:
    """Strip, collapse whitespace, drop surrounding quotes/backticks/fences and a leading "Prompt:" label."""
    previous = None
    text = " ".join(_strip_fence(text).split())
    while text != previous:
        previous = text
        text = _LABEL.sub("", text, count=1).strip()
        if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
            inner = text[1:-1]
            # '"Yes" or "No"' is a prompt that starts and ends with quotes, not a quoted prompt.
            if text[0] not in inner and text[-1] not in inner:
                text = inner.strip()
    return text


def prompt_key(text: str) -> str:
    """The identity of a prompt for de-duplication: case and whitespace do not matter."""
    return " ".join(text.split()).casefold()


def rejection_reason(candidate: str) -> str | None:
    """Why a (normalized) candidate is unusable, or None if it is fine."""
    if not candidate.strip():
        return "empty"
    if not any(c.isalpha() for c in candidate):
        return "no_letters"
    if len(candidate) > MAX_CHARS or len(candidate.split()) > MAX_WORDS:
        return "too_long"
    if _SCAFFOLDING.search(candidate) or _PLACEHOLDER_LIKE.search(candidate) or _JSON_LIKE.search(candidate):
        return "scaffolding"
    visible = [c for c in candidate if not c.isspace()]
    if sum(c.isalpha() for c in visible) < 0.6 * len(visible):
        return "garbage"
    return None


# Template holes a weak model copies instead of filling in: "<new prompt>", "{new prompt}", "[your prompt]".
_PLACEHOLDER_LIKE = re.compile(r"<\s*[A-Za-z][A-Za-z _-]{0,30}\s*>|\{\s*[A-Za-z][A-Za-z _-]{0,30}\s*\}|\[\s*(?:your|new)\b[^\]]{0,30}\]", re.I)
# Half-written JSON that the JSON path could not parse: '{ "prompt" : ...'.
_JSON_LIKE = re.compile(r'^\s*\{\s*"|"prompt"\s*:', re.I)


def _from_json(text: str) -> str | None:
    """The "prompt" string of the first JSON object in text, or None."""
    body = _strip_fence(text.strip()).strip()
    attempts = [body]
    first, last = body.find("{"), body.rfind("}")
    if 0 <= first < last:
        attempts.append(body[first : last + 1])
    for attempt in attempts:
        try:
            data = json.loads(attempt)
        except (json.JSONDecodeError, RecursionError):
            continue
        if isinstance(data, dict) and isinstance(data.get("prompt"), str):
            return data["prompt"]
    return None


def _from_markers(text: str) -> str | None:
    """Text between the last <START> and the next <END> (or the end of the text), or None."""
    text = _ECHOED_INSTRUCTION.sub(" ", text)
    starts = list(_START.finditer(text))
    if not starts:
        return None
    rest = text[starts[-1].end() :]
    end = _END.search(rest)
    return rest[: end.start()] if end else rest


def _is_skippable_line(line: str) -> bool:
    return bool(
        _HEADING.match(line)
        or line.endswith(":")
        or _SCORE_LINE.match(line)
        or _CHATTER.match(line)
        or _SCAFFOLDING.search(line)
    )


def _from_fallback(text: str) -> str | None:
    for raw in _strip_fence(text).splitlines():
        line = raw.strip()
        if not line or _is_skippable_line(line):
            continue
        candidate = normalize_prompt(line)
        if FALLBACK_MIN_WORDS <= len(candidate.split()) <= FALLBACK_MAX_WORDS:
            return candidate
    return None


def extract_candidate(text: str, *, structured: bool) -> tuple[str | None, str]:
    """(candidate or None, how) from one optimizer reply; see the module docstring for the rules."""
    found: str | None = None
    how = ""
    if structured:
        found, how = _from_json(text), "json"
    if found is None:
        found, how = _from_markers(text), "markers"
    if found is None and not structured:
        # A model asked for markers sometimes answers in JSON anyway.
        found, how = _from_json(text), "json"
    if found is None:
        found = _from_fallback(text)
        how = "fallback"
        if found is None:
            return None, "rejected:no_candidate"
    candidate = normalize_prompt(found)
    reason = rejection_reason(candidate)
    if reason is not None:
        return None, f"rejected:{reason}"
    return candidate, how


def extract_paper_candidate(text: str, *, start_marker: str = "<START>", end_marker: str = "<END>") -> str:
    """A candidate as the official GPO code takes it (optimize.py extract_text, then eval_utils.polish_sentence):
    the text from the first "<START>" (else the reply's start) to the first "<END>" (else its end), markers matched
    case-sensitively, stripped; then "**" removed and, when longer than one character, the first character
    upper-cased. Nothing is rejected: an empty candidate stays empty. The official feedback replies are read the
    same way (core/variants.py)."""
    start = text.index(start_marker) + len(start_marker) if start_marker in text else 0
    end = text.index(end_marker) if end_marker in text else len(text)
    sentence = text[start:end].strip()
    if sentence:
        sentence = sentence.replace("**", "")
        if len(sentence) > 1:
            sentence = sentence[0].upper() + sentence[1:]
    return sentence


class CandidateFilter:
    """Admits each candidate prompt once: never one already tried, nor a repeat within this step.

    Keys ignore case and whitespace (`prompt_key`). `counts` tallies what happened to each
    candidate: "admitted", "duplicate" and "rejected:<reason>" (also for extraction rejections
    recorded with `reject`), which the controller reports per step.
    """

    def __init__(self, tried: Iterable[str], *, paper: bool = False) -> None:
        # paper (candidate_extraction paper): exact text is the identity and nothing is rejected, as optimize.py does
        # with its md5 of the polished text.
        self._paper = paper
        self._key = (lambda p: p) if paper else prompt_key
        self._seen = {self._key(p) for p in tried}
        self._counts: dict[str, int] = {"admitted": 0, "duplicate": 0}

    @property
    def counts(self) -> dict[str, int]:
        return dict(self._counts)

    def _tally(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def reject(self, how: str) -> None:
        """Count a candidate rejected before it got here, e.g. extract_candidate's "rejected:too_long"."""
        self._tally(how if how.startswith("rejected:") else f"rejected:{how}")

    def admit(self, candidate: str) -> bool:
        """True (and remember it) when candidate is usable and new; False otherwise."""
        reason = None if self._paper else rejection_reason(candidate)
        if reason is not None:
            self._tally(f"rejected:{reason}")
            return False
        key = self._key(candidate)
        if key in self._seen:
            self._tally("duplicate")
            return False
        self._seen.add(key)
        self._tally("admitted")
        return True
